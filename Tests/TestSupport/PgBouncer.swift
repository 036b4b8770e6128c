import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A pgbouncer (Debian's, 1.18) in front of one database of the scratch cluster, for the tests
/// of what holds behind a pooler. Its own directory, port, user list and log; stopped (SIGKILL to
/// its pid) when this goes.
public final class PgBouncer {
    public let port: Int
    public let directory: URL
    private let database: String

    /// `poolMode` `transaction` or `session`; `poolSize` server connections for the database;
    /// `ignoredStartupParameters` as pgbouncer's `ignore_startup_parameters`. `users` maps role
    /// names to passwords (pgbouncer logs in to PostgreSQL with them, SCRAM on both sides).
    public init(
        database: String, users: [String: String], poolMode: String = "transaction", poolSize: Int = 1,
        ignoredStartupParameters: [String] = []
    ) throws {
        guard let server = URLComponents(string: TestCluster.adminURL), let host = server.host,
            let serverPort = server.port
        else { throw HarnessError("TEST_ADMIN_DATABASE_URL has no host and port") }
        self.database = database
        self.port = try Processes.freePort()
        self.directory = try Processes.temporaryDirectory(prefix: "casehug-pgbouncer")
        let userList = users.sorted { $0.key < $1.key }.map { "\"\($0.key)\" \"\($0.value)\"\n" }.joined()
        let configuration = """
            [databases]
            \(database) = host=\(host) port=\(serverPort) dbname=\(database)

            [pgbouncer]
            listen_addr = 127.0.0.1
            listen_port = \(port)
            unix_socket_dir =
            auth_type = scram-sha-256
            auth_file = \(directory.path)/userlist.txt
            pool_mode = \(poolMode)
            default_pool_size = \(poolSize)
            max_client_conn = 200
            ignore_startup_parameters = \(ignoredStartupParameters.joined(separator: ","))
            logfile = \(directory.path)/pgbouncer.log
            pidfile = \(directory.path)/pgbouncer.pid

            """
        try userList.write(to: directory.appendingPathComponent("userlist.txt"), atomically: true, encoding: .utf8)
        try configuration.write(
            to: directory.appendingPathComponent("pgbouncer.ini"), atomically: true, encoding: .utf8)
        var arguments = ["-d", directory.appendingPathComponent("pgbouncer.ini").path]
        // pgbouncer refuses to run as root: as root it runs as the cluster's own OS user.
        if getuid() == 0 {
            guard let account = getpwnam("postgres") else { throw HarnessError("no postgres user to run pgbouncer as") }
            for path in ["", "/userlist.txt", "/pgbouncer.ini"] {
                chown(directory.path + path, account.pointee.pw_uid, account.pointee.pw_gid)
            }
            arguments = ["-u", "postgres"] + arguments
        }
        try Processes.runTool(Self.executable, arguments)
        try Processes.waitFor("pgbouncer to listen on \(port)") { self.pid != nil && self.log.contains("listening on") }
    }

    deinit {
        // SIGKILL: the test process blocks SIGTERM in threads that spawn, and a daemon started
        // from one inherits the mask (pgbouncer never unblocks it).
        if let pid { kill(pid, SIGKILL) }
        try? FileManager.default.removeItem(at: directory)
    }

    /// Debian's path; scripts/test installs the package.
    public static let executable = "/usr/sbin/pgbouncer"

    /// A libpq URL for `role` through this pgbouncer.
    public func url(role: String, password: String) -> String {
        "postgresql://\(role):\(password)@127.0.0.1:\(port)/\(database)"
    }

    public var log: String {
        (try? String(contentsOf: directory.appendingPathComponent("pgbouncer.log"), encoding: .utf8)) ?? ""
    }

    private var pid: pid_t? {
        guard let text = try? String(contentsOf: directory.appendingPathComponent("pgbouncer.pid"), encoding: .utf8)
        else { return nil }
        return pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
