import CFastCGI

/// Owns one `FCGX_Request`. libfcgi keeps the request's address inside the streams it creates,
/// so the struct lives at a stable heap address for the worker's life (never a Swift local,
/// which may move), and is freed and deallocated exactly once.
final class FastCGIRequest {
    let pointer: UnsafeMutablePointer<FCGX_Request>

    init?(listenFD: Int32) {
        pointer = .allocate(capacity: 1)
        pointer.initialize(to: FCGX_Request())
        // FCGX_InitRequest zeroes the struct first, so FCGX_Free in deinit is safe either way.
        guard FCGX_InitRequest(pointer, listenFD, FCGI_FAIL_ACCEPT_ON_INTR) == 0 else { return nil }
    }

    deinit {
        FCGX_Free(pointer, 1)
        pointer.deinitialize(count: 1)
        pointer.deallocate()
    }
}
