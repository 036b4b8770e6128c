import Foundation
import TestSupport
import Testing

/// The production files under deploy/: the install script and the systemd units it installs,
/// the production nginx site, and the settings template with its documentation table.
@Suite("Production files")
struct ProductionFilesTests {
    static let root = TestEnvironment.repositoryRoot

    static func text(_ path: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
    }

    /// The route names Package.swift declares (`let routes = [...]`).
    static func routes() throws -> [String] {
        let package = try text("Package.swift")
        guard let line = package.split(separator: "\n").first(where: { $0.hasPrefix("let routes = [") }) else {
            throw HarnessError("no routes line in Package.swift")
        }
        return line.split(separator: "\"").enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }
    }

    // MARK: systemd

    @Test(
        "deploy/install creates the users, directories and units, and systemd-analyze verify accepts every unit",
        .enabled(if: getuid() == 0, "deploy/install creates users and root-owned directories"))
    func installAndVerify() throws {
        let target = try Processes.temporaryDirectory(prefix: "casehug-install")
        defer { try? FileManager.default.removeItem(at: target) }
        try Processes.runTool(
            Self.root.appendingPathComponent("deploy/install").path, ["--root", target.path])
        // Idempotent: a second run changes nothing and fails on nothing.
        try Processes.runTool(
            Self.root.appendingPathComponent("deploy/install").path, ["--root", target.path])

        let passwd = try String(contentsOf: target.appendingPathComponent("etc/passwd"), encoding: .utf8)
        let accounts = Dictionary(
            passwd.split(separator: "\n").map { $0.split(separator: ":", omittingEmptySubsequences: false) }
                .map { (String($0[0]), $0) }, uniquingKeysWith: { first, _ in first })
        let routes = try Self.routes()
        #expect(routes.count == 6)
        var uids: Set<Substring> = []
        for name in routes.map({ "casehug-\($0)" }) + ["casehug-worker"] {
            let account = try #require(accounts[name], "no user \(name)")
            #expect(account[6] == "/usr/sbin/nologin")
            #expect(account[2] != "0")
            uids.insert(account[2])
        }
        // Each its own user.
        #expect(uids.count == routes.count + 1)

        let manager = FileManager.default
        // The socket directories as deploy/install made them, then as systemd-tmpfiles makes
        // them at boot from the installed rule (users resolved in the target's etc/passwd).
        func checkSocketDirectories(symlinks: Bool) throws {
            for route in routes {
                let directory = target.appendingPathComponent("run/casehug/\(route)").path
                let attributes = try manager.attributesOfItem(atPath: directory)
                // Owner the route's user, group www-data, setgid, nothing for others.
                #expect((attributes[.posixPermissions] as? Int) == 0o2750)
                #expect(
                    (attributes[.ownerAccountID] as? NSNumber)?.stringValue
                        == accounts["casehug-\(route)"].map { String($0[2]) })
                #expect(
                    (attributes[.groupOwnerAccountID] as? NSNumber)?.uint32Value == getgrnam("www-data")?.pointee.gr_gid
                )
                if symlinks {
                    #expect(
                        try manager.destinationOfSymbolicLink(atPath: directory + "/\(route).sock") == "\(route)-a.sock"
                    )
                }
            }
        }
        try checkSocketDirectories(symlinks: false)
        try manager.removeItem(at: target.appendingPathComponent("run/casehug"))
        try Processes.runTool(
            "/usr/bin/systemd-tmpfiles",
            ["--root=\(target.path)", "--create", target.appendingPathComponent("etc/tmpfiles.d/casehug.conf").path])
        try checkSocketDirectories(symlinks: true)
        for file in ["etc/casehug/casehug.env", "etc/casehug/worker.env"] {
            let attributes = try manager.attributesOfItem(atPath: target.appendingPathComponent(file).path)
            #expect((attributes[.posixPermissions] as? Int) == 0o640, "\(file)")
            #expect((attributes[.ownerAccountID] as? NSNumber)?.intValue == 0)
        }

        let units = target.appendingPathComponent("etc/systemd/system")
        let instances = routes.flatMap { route in ["a", "b"].map { "casehug-route@\(route)-\($0).service" } }
        for instance in instances {
            let dropIn = try String(
                contentsOf: units.appendingPathComponent("\(instance).d/10-route.conf"), encoding: .utf8)
            let route = instance.dropFirst("casehug-route@".count).split(separator: "-")[0]
            #expect(dropIn.contains("User=casehug-\(route)\n"))
            #expect(dropIn.contains("Environment=CASEHUG_ROUTE=\(route)\n"))
        }
        // Unknown keys are only warnings, so the output must be empty, not just the status zero.
        let output = try Processes.runTool(
            "/usr/bin/systemd-analyze", ["verify"] + instances + ["casehug-worker.service", "casehug.target"],
            environment: ["SYSTEMD_UNIT_PATH": units.path + ":", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"])
        #expect(output.isEmpty, "systemd-analyze verify: \(output)")
    }

    @Test("Every unit runs as an unprivileged user with the hardening settings, and there is none for the sandbox")
    func unitsAreHardened() throws {
        let directory = Self.root.appendingPathComponent("deploy/systemd")
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        #expect(names.filter { $0.hasSuffix(".service") } == ["casehug-route@.service", "casehug-worker.service"])
        #expect(names.contains("casehug.target"))
        #expect(!names.contains { $0.contains("sandbox") })
        let required = [
            "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes",
            "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "SystemCallFilter=@system-service",
            "CapabilityBoundingSet=", "LockPersonality=yes", "MemoryDenyWriteExecute=yes",
        ]
        for name in names where name.hasSuffix(".service") {
            let lines = Set(
                try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
                    .split(separator: "\n").map(String.init))
            for setting in required { #expect(lines.contains(setting), "\(name) lacks \(setting)") }
            #expect(lines.contains { $0.hasPrefix("User=casehug-") }, "\(name) names no user")
            #expect(lines.contains("EnvironmentFile=/etc/casehug/casehug.env"))
            #expect(lines.contains { $0.hasPrefix("ExecStart=") && $0.contains("/opt/casehug/releases/") })
        }
    }

    // MARK: nginx

    @Test("The production nginx site passes nginx -t with a self-signed certificate")
    func nginxAcceptsTheSite() throws {
        let prefix = try Processes.temporaryDirectory(prefix: "casehug-nginx-prod")
        defer { try? FileManager.default.removeItem(at: prefix) }
        for directory in ["logs", "tls"] {
            try FileManager.default.createDirectory(
                at: prefix.appendingPathComponent(directory), withIntermediateDirectories: true)
        }
        try Processes.runTool(
            "/usr/bin/openssl",
            [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=casehug.test", "-days", "1",
                "-keyout", prefix.path + "/tls/privkey.pem", "-out", prefix.path + "/tls/fullchain.pem",
            ])
        // The site as installed, with its certificate and log paths moved into the prefix.
        let site = try Self.text("deploy/nginx/casehug.conf")
            .replacingOccurrences(of: "/etc/casehug/tls/", with: prefix.path + "/tls/")
            .replacingOccurrences(of: "/var/log/nginx/", with: prefix.path + "/logs/")
        try site.write(to: prefix.appendingPathComponent("casehug.conf"), atomically: true, encoding: .utf8)
        // What Debian's nginx.conf does around conf.d/, reduced to what nginx -t needs.
        let main = """
            pid \(prefix.path)/nginx.pid;
            error_log \(prefix.path)/logs/error.log;
            events {}
            http {
                client_body_temp_path \(prefix.path)/client_body;
                fastcgi_temp_path \(prefix.path)/fastcgi;
                include \(prefix.path)/casehug.conf;
            }

            """
        try main.write(to: prefix.appendingPathComponent("nginx.conf"), atomically: true, encoding: .utf8)
        let output = try Processes.runTool(
            TestEnvironment.nginx, ["-t", "-p", prefix.path, "-c", prefix.path + "/nginx.conf"])
        #expect(output.contains("test is successful"))
        #expect(!output.contains("[warn]"), "\(output)")
    }

    /// The nginx variables that can hold a query string, a token or a cookie.
    static let secretBearingVariables = [
        "$request_uri", "$request ", "$request\"", "$request'", "$request,", "$args", "$query_string", "$arg_",
        "$http_authorization", "$http_cookie", "$cookie_", "$is_args",
    ]

    @Test("The production access log format holds no query string, token or cookie, and every access log uses it")
    func logFormatHoldsNoSecrets() throws {
        let site = try Self.text("deploy/nginx/casehug.conf")
        // The log_format statement: from its keyword to the semicolon that ends it.
        let formats = site.components(separatedBy: "log_format ").dropFirst().map { $0.prefix { $0 != ";" } }
        #expect(formats.count == 1)
        for format in formats {
            #expect(format.contains("$uri"))
            for variable in Self.secretBearingVariables {
                #expect(!format.contains(variable), "log_format uses \(variable)")
            }
        }
        let accessLogs = site.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { $0.hasPrefix("access_log ") }
        #expect(!accessLogs.isEmpty)
        for line in accessLogs { #expect(line.hasSuffix(" casehug_json;"), "\(line)") }
    }

    @Test("The production nginx site keeps every limit, timeout and FastCGI setting of the development template")
    func siteKeepsTheDevelopmentLimits() throws {
        func settings(_ text: String) -> Set<String> {
            let names = [
                "client_max_body_size", "client_body_buffer_size", "large_client_header_buffers",
                "client_header_timeout", "client_body_timeout", "send_timeout", "fastcgi_connect_timeout",
                "fastcgi_send_timeout", "fastcgi_read_timeout", "fastcgi_keep_conn", "fastcgi_request_buffering",
                "fastcgi_buffering", "fastcgi_intercept_errors", "fastcgi_ignore_headers", "fastcgi_param",
                "server_tokens", "error_page",
            ]
            return Set(
                text.split(separator: "\n").map {
                    $0.trimmingCharacters(in: .whitespaces).split(whereSeparator: \.isWhitespace).joined(separator: " ")
                        .replacingOccurrences(of: "$casehug_req_id", with: "$req_id")
                }.filter { line in names.contains { line.hasPrefix($0 + " ") } })
        }
        let development = settings(try Self.text("nginx/nginx.conf.template"))
        let production = settings(try Self.text("deploy/nginx/casehug.conf"))
        #expect(development.count > 30)
        #expect(development.subtracting(production).isEmpty, "missing: \(development.subtracting(production).sorted())")
        // The webhooks location's smaller body limit, which scripts/render-nginx adds in development.
        #expect(production.contains("client_max_body_size 256k;"))
    }

    // MARK: settings

    /// Names in production sources that are not settings: CGI variables the runtime reads from
    /// each request, OpenSSL constants.
    static let notSettings: Set<String> = [
        "CONTENT_LENGTH", "CONTENT_TYPE", "DOCUMENT_URI", "QUERY_STRING", "REMOTE_ADDR", "REQUEST_METHOD",
        "REQUEST_URI", "SCRIPT_NAME", "HTTP_X_REQUEST_ID", "HTTP_AUTHORIZATION",
    ]

    /// Every `"UPPER_CASE_NAME"` string literal in the production sources.
    static func settingNames() throws -> Set<String> {
        let directories =
            ["Integration", "Smokeball", "PostgreSQL", "FastCGI", "HTTPClient", "Basics", "worker", "casehug-admin"]
            + (try routes())
        let pattern = try NSRegularExpression(pattern: "\"([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\"")
        var names: Set<String> = []
        for directory in directories {
            let base = root.appendingPathComponent("Sources/\(directory)")
            guard let files = FileManager.default.enumerator(atPath: base.path) else { continue }
            for case let file as String in files where file.hasSuffix(".swift") {
                let source = try String(contentsOf: base.appendingPathComponent(file), encoding: .utf8)
                for match in pattern.matches(in: source, range: NSRange(source.startIndex..., in: source)) {
                    if let range = Range(match.range(at: 1), in: source) { names.insert(String(source[range])) }
                }
            }
        }
        return names.subtracting(notSettings).filter { !$0.hasPrefix("EVP_") }
    }

    @Test("Every environment variable the production processes read is in the settings template and the table")
    func everySettingIsDocumented() throws {
        let names = try Self.settingNames()
        // The extraction itself works: settings of each kind are found.
        #expect(names.isSuperset(of: ["DATABASE_URL", "SMOKEBALL_CLIENT_ID", "RECONCILIATION_TIME", "SITE_URL"]))
        let template = Set(
            try Self.text("deploy/casehug.env.example").split(separator: "\n")
                .filter { !$0.hasPrefix("#") && $0.contains("=") }.map { String($0.prefix { $0 != "=" }) })
        let table = try Self.text("docs/configuration.md").split(separator: "\n")
            .filter { $0.hasPrefix("| `") }.map { String($0.dropFirst(3).prefix { $0 != "`" }) }
        #expect(
            names.subtracting(template).isEmpty, "not in deploy/casehug.env.example: \(names.subtracting(template))")
        #expect(names.subtracting(table).isEmpty, "not in docs/configuration.md: \(names.subtracting(table))")
        // And nothing documented that no process reads.
        #expect(template.subtracting(names).isEmpty, "documented but never read: \(template.subtracting(names))")
        #expect(Set(table).subtracting(names).isEmpty, "documented but never read: \(Set(table).subtracting(names))")
        // One line each.
        #expect(Set(table).count == table.count)
    }
}
