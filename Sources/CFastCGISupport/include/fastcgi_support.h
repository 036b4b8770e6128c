#ifndef CFASTCGISUPPORT_H
#define CFASTCGISUPPORT_H

#include <fcgiapp.h>

/// Installs the SIGTERM/SIGINT handler that sets the worker's stop flag (a `volatile
/// sig_atomic_t`, the only kind of object a signal handler may write). No SA_RESTART, so the
/// signal interrupts the wait in `fastcgi_support_wait_readable`. Returns 0, or -1 with errno.
int fastcgi_support_install_stop_handler(void);

/// Whether SIGTERM or SIGINT has been received since the handler was installed.
int fastcgi_support_stop_requested(void);

/// Waits until `fd` is readable or a stop signal arrives. Call it with SIGTERM and SIGINT
/// blocked: the flag is checked while they are blocked and `ppoll` unblocks them atomically for
/// the wait only, so a signal arriving at any moment either is seen by the check or interrupts
/// the wait. Returns 1 when readable, 0 when a stop was requested, -1 with errno on failure.
int fastcgi_support_wait_readable(int fd);

/// `fastcgi_support_wait_readable` with a limit: waits at most `timeout_ms` milliseconds (-1:
/// no limit). Returns 1 when readable, 0 when a stop was requested, 2 when the time ran out, -1
/// with errno on failure.
int fastcgi_support_wait_readable_for(int fd, int timeout_ms);

/// `prctl(PR_SET_PDEATHSIG, signal)` (variadic, so not callable from Swift). Returns 0, or -1.
int fastcgi_support_set_parent_death_signal(int signal);

/// Ends a request as `FCGX_Finish_r` does, but closes a connection that is not kept without
/// lingering: libfcgi half-closes it and waits (up to 2 s) for the web server to close first,
/// which guards TCP against a reset that could discard the answer. Over a Unix socket there is
/// no reset, and the wait parked each worker until nginx had read the answer. The web server's
/// remaining input is read to its end first.
void fastcgi_support_finish(FCGX_Request *request);

#endif
