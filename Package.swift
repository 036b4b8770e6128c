// swift-tools-version:6.0
// No package dependencies by design: Foundation plus system libraries (libfcgi, libpq,
// libcurl, libcrypto). Each route is its own small FastCGI executable over one core library.
import PackageDescription

let routes = ["status", "connect", "callback", "disconnect", "sync", "webhooks"]

let package = Package(
    name: "SmokeballIntegration",
    platforms: [.macOS(.v14)],
    products: routes.map { .executable(name: $0, targets: [$0]) } + [
        .executable(name: "hello", targets: ["hello"]),
        .executable(name: "hello-db", targets: ["hello-db"]),
        .executable(name: "casehug-admin", targets: ["casehug-admin"]),
        .executable(name: "worker", targets: ["worker"]),
        .executable(name: "smokeball-sandbox", targets: ["smokeball-sandbox"]),
    ],
    targets: [
        // C system libraries: a module map and a shim header each.
        .systemLibrary(name: "CFastCGI", pkgConfig: "fcgi", providers: [.apt(["libfcgi-dev"])]),
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        // What Swift cannot express: a signal handler's sig_atomic_t flag, ppoll, variadic prctl.
        .target(name: "CFastCGISupport"),

        // One home for the low-level helpers every layer shares: hex, percent-encoding and query
        // strings, timestamps, JSON booleans, command-line flags. Foundation only.
        .target(name: "Basics"),

        // Thin Swift owners of each C library's handles.
        .target(name: "FastCGI", dependencies: ["Basics", "CFastCGI", "CFastCGISupport"]),
        .target(name: "PostgreSQL", dependencies: ["Basics", "CLibPQ"]),
        .target(name: "HTTPClient", dependencies: ["Basics", "CCurl"]),
        .target(name: "Cryptography", dependencies: ["Basics", "CCrypto"]),

        // The Smokeball API client (OAuth, typed resources, retries) and the partner's shared rate limit.
        .target(name: "Smokeball", dependencies: ["Basics", "PostgreSQL", "Cryptography", "HTTPClient"]),

        // The integration core: auth, tenancy, settings, route handlers.
        .target(
            name: "Integration",
            dependencies: ["Basics", "FastCGI", "PostgreSQL", "Cryptography", "HTTPClient", "Smokeball"]),

        // The local Smokeball: auth server, API subset, rate limit, admin (issue #3).
        .target(
            name: "SmokeballSandbox", dependencies: ["Basics", "FastCGI", "PostgreSQL", "Cryptography", "HTTPClient"]),

        // Route executables: a few lines each.
        .executableTarget(name: "status", dependencies: ["FastCGI", "Integration"]),
        .executableTarget(name: "connect", dependencies: ["Integration"]),
        .executableTarget(name: "callback", dependencies: ["Integration"]),
        .executableTarget(name: "disconnect", dependencies: ["Integration"]),
        .executableTarget(name: "sync", dependencies: ["Integration"]),
        .executableTarget(name: "webhooks", dependencies: ["Integration"]),
        // The benchmark's ceiling: the same runtime answering a constant.
        .executableTarget(name: "hello", dependencies: ["FastCGI"]),
        // The floor of a route that reads PostgreSQL: the same, after one `SELECT 1` round trip.
        .executableTarget(name: "hello-db", dependencies: ["FastCGI", "Integration", "PostgreSQL"]),
        // The job worker (no HTTP route): pre-forked processes that run the queue's jobs.
        .executableTarget(name: "worker", dependencies: ["Integration"]),
        // Migrations, demo seed, token minting for scripts.
        .executableTarget(name: "casehug-admin", dependencies: ["Integration"]),
        .executableTarget(name: "smokeball-sandbox", dependencies: ["FastCGI", "SmokeballSandbox"]),
        // bytea throughput of the PostgreSQL layer (scripts/bench bytea).
        .executableTarget(name: "pg-bench", dependencies: ["Basics", "PostgreSQL"]),
        // Floods Smokeball from one process through the shared rate limit (the rate-limit test runs
        // several), or calls it once per thread through the token provider (the refresh test).
        .executableTarget(name: "smokeball-flood", dependencies: ["Basics", "Integration", "PostgreSQL", "Smokeball"]),
        // One upload from the document store to a Smokeball upload URL: peak RSS and throughput
        // (scripts/bench transfer).
        .executableTarget(name: "transfer-bench", dependencies: ["Basics", "HTTPClient", "Integration", "Smokeball"]),

        // What several test targets share: the scratch cluster's throwaway databases, seeded
        // generators for fuzzing.
        .target(name: "TestSupport", dependencies: ["Basics", "PostgreSQL"], path: "Tests/TestSupport"),
        // A worker with test-only job kinds (blocking, failing, recording), for the queue's process tests.
        .executableTarget(name: "job-test-worker", dependencies: ["Integration"], path: "Tests/JobTestWorker"),
        .testTarget(name: "BasicsTests", dependencies: ["Basics"]),
        .testTarget(name: "FastCGITests", dependencies: ["Basics", "FastCGI", "TestSupport"]),
        .testTarget(name: "PostgreSQLTests", dependencies: ["PostgreSQL", "TestSupport"]),
        .testTarget(name: "CryptographyTests", dependencies: ["Basics", "Cryptography"]),
        .testTarget(name: "HTTPClientTests", dependencies: ["Basics", "HTTPClient"], exclude: ["Fixtures"]),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "Basics", "Integration", "FastCGI", "PostgreSQL", "Cryptography", "HTTPClient", "Smokeball",
                "TestSupport",
            ],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "SandboxTests",
            dependencies: [
                "Basics", "SmokeballSandbox", "FastCGI", "PostgreSQL", "Cryptography", "HTTPClient", "TestSupport",
            ],
            resources: [.copy("Fixtures")]
        ),
    ]
)
