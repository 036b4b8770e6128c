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

    /// One unit's slot as scripts/deploy addresses it under systemd (scripts/lib/slots.sh's
    /// functions, which deploy/install uses too): the systemd unit, and for a route the slot's
    /// socket and the symlink nginx connects to.
    struct DeploySlot {
        let unit: String
        let slot: String
        let systemdUnit: String
        let socket: String?
        let liveSocket: String?

        /// `casehug-route@status-a.service` -> `casehug-route@.service`, `status-a`.
        var template: String { String(systemdUnit.prefix { $0 != "@" }) + "@.service" }
        var instance: String {
            String(systemdUnit.drop { $0 != "@" }.dropFirst().dropLast(".service".count))
        }
    }

    /// What scripts/lib/slots.sh answers for every unit and slot, with production's prefix.
    static func deploySlots() throws -> [DeploySlot] {
        let script = """
            set -euo pipefail
            source scripts/lib/common.sh
            source scripts/lib/slots.sh
            for unit in \(try routes().joined(separator: " ")) worker; do
                for slot in a b; do
                    if [[ ${unit} == worker ]]; then
                        echo "${unit} ${slot} $(systemd_unit "${unit}" "${slot}") - -"
                    else
                        echo "${unit} ${slot} $(systemd_unit "${unit}" "${slot}")" \\
                            "$(slot_socket systemd /opt/casehug "${unit}" "${slot}")" \\
                            "$(live_socket systemd /opt/casehug "${unit}")"
                    fi
                done
            done
            """
        let output = try Processes.runTool(
            "/bin/bash", ["-c", "cd \"$0\" && " + script, root.path],
            environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"])
        return output.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }.filter {
            $0.count == 5
        }.map {
            DeploySlot(
                unit: $0[0], slot: $0[1], systemdUnit: $0[2], socket: $0[3] == "-" ? nil : $0[3],
                liveSocket: $0[4] == "-" ? nil : $0[4])
        }
    }

    /// Runs deploy/install into a new directory, which the caller removes.
    static func install() throws -> URL {
        let target = try Processes.temporaryDirectory(prefix: "casehug-install")
        try Processes.runTool(root.appendingPathComponent("deploy/install").path, ["--root", target.path])
        return target
    }

    /// The users of an installed tree by name: the fields of their etc/passwd line.
    static func accounts(_ target: URL) throws -> [String: [Substring]] {
        let passwd = try String(contentsOf: target.appendingPathComponent("etc/passwd"), encoding: .utf8)
        return Dictionary(
            passwd.split(separator: "\n").map { $0.split(separator: ":", omittingEmptySubsequences: false) }
                .map { (String($0[0]), $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// The units enabled in casehug.target of an installed tree.
    static func enabled(_ target: URL) throws -> Set<String> {
        Set(
            try FileManager.default.contentsOfDirectory(
                atPath: target.appendingPathComponent("etc/systemd/system/casehug.target.wants").path))
    }

    @Test(
        "deploy/install creates the users, directories and units, and systemd-analyze verify accepts every unit",
        .enabled(if: getuid() == 0, "deploy/install creates users and root-owned directories"))
    func installAndVerify() throws {
        let target = try Self.install()
        defer { try? FileManager.default.removeItem(at: target) }
        let accounts = try Self.accounts(target)
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
        for route in routes {
            // Persistent (not /run): the symlink to the live slot must survive a reboot.
            let directory = target.appendingPathComponent("opt/casehug/sockets/\(route)").path
            let attributes = try manager.attributesOfItem(atPath: directory)
            // Owner the route's user, group www-data, setgid, nothing for others.
            #expect((attributes[.posixPermissions] as? Int) == 0o2750)
            #expect(
                (attributes[.ownerAccountID] as? NSNumber)?.stringValue
                    == accounts["casehug-\(route)"].map { String($0[2]) })
            #expect(
                (attributes[.groupOwnerAccountID] as? NSNumber)?.uint32Value == getgrnam("www-data")?.pointee.gr_gid)
            #expect(try manager.destinationOfSymbolicLink(atPath: directory + "/\(route).sock") == "\(route)-a.sock")
        }
        for file in ["etc/casehug/casehug.env", "etc/casehug/worker.env"] {
            let attributes = try manager.attributesOfItem(atPath: target.appendingPathComponent(file).path)
            #expect((attributes[.posixPermissions] as? Int) == 0o640, "\(file)")
            #expect((attributes[.ownerAccountID] as? NSNumber)?.intValue == 0)
        }
        // The settings page's files, where the nginx site's root points, readable by nginx's workers.
        let page = target.appendingPathComponent("opt/casehug/site/integrations/smokeball/app.js").path
        #expect((try manager.attributesOfItem(atPath: page)[.posixPermissions] as? Int) == 0o644)
        #expect(try Self.text("deploy/nginx/casehug.conf").contains("root /opt/casehug/site;"))

        let units = target.appendingPathComponent("etc/systemd/system")
        let instances = routes.flatMap { route in ["a", "b"].map { "casehug-route@\(route)-\($0).service" } }
        for instance in instances {
            let dropIn = try String(
                contentsOf: units.appendingPathComponent("\(instance).d/10-route.conf"), encoding: .utf8)
            let route = instance.dropFirst("casehug-route@".count).split(separator: "-")[0]
            #expect(dropIn.contains("User=casehug-\(route)\n"))
            #expect(dropIn.contains("Environment=CASEHUG_ROUTE=\(route)\n"))
            #expect(dropIn.contains("ReadWritePaths=/opt/casehug/sockets/\(route)\n"))
        }
        // Boot starts slot a of every route and of the worker, nothing else; the target with
        // multi-user.target.
        #expect(
            try Self.enabled(target)
                == Set(routes.map { "casehug-route@\($0)-a.service" } + ["casehug-worker@a.service"]))
        // (A link to /etc/systemd/system/casehug.target: dangling outside the installed tree.)
        #expect(
            try manager.destinationOfSymbolicLink(atPath: units.path + "/multi-user.target.wants/casehug.target")
                == "/etc/systemd/system/casehug.target")
        // Unknown keys are only warnings, so the output must be empty, not just the status zero.
        let output = try Processes.runTool(
            "/usr/bin/systemd-analyze",
            ["verify"] + instances + ["casehug-worker@a.service", "casehug-worker@b.service", "casehug.target"],
            environment: ["SYSTEMD_UNIT_PATH": units.path + ":", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"])
        #expect(output.isEmpty, "systemd-analyze verify: \(output)")

        // What scripts/deploy did since (status live on slot b) survives installing again: the
        // socket symlink stays, and the live slot stays the enabled one.
        let status = target.appendingPathComponent("opt/casehug/sockets/status/status.sock").path
        try manager.removeItem(atPath: status)
        try manager.createSymbolicLink(atPath: status, withDestinationPath: "status-b.sock")
        try manager.createDirectory(
            at: target.appendingPathComponent("opt/casehug/slots"), withIntermediateDirectories: true)
        try manager.createSymbolicLink(
            atPath: target.appendingPathComponent("opt/casehug/slots/status").path, withDestinationPath: "b")
        try manager.removeItem(atPath: units.path + "/casehug.target.wants/casehug-route@status-a.service")
        try Processes.runTool(
            Self.root.appendingPathComponent("deploy/install").path, ["--root", target.path])
        #expect(try manager.destinationOfSymbolicLink(atPath: status) == "status-b.sock")
        let enabled = try Self.enabled(target)
        #expect(enabled.contains("casehug-route@status-b.service"))
        #expect(!enabled.contains("casehug-route@status-a.service"))
    }

    @Test(
        "scripts/deploy under systemd uses the unit names and socket paths deploy/install, the units and the nginx site define",
        .enabled(if: getuid() == 0, "deploy/install creates users and root-owned directories"))
    func deployMatchesTheInstalledFiles() throws {
        let slots = try Self.deploySlots()
        let routes = try Self.routes()
        #expect(slots.count == (routes.count + 1) * 2)
        let target = try Self.install()
        defer { try? FileManager.default.removeItem(at: target) }
        let units = target.appendingPathComponent("etc/systemd/system")
        let manager = FileManager.default
        let site = try Self.text("deploy/nginx/casehug.conf")
        let enabled = try Self.enabled(target)
        for slot in slots {
            // The unit scripts/deploy starts is an instance of an installed template...
            let template = try String(contentsOf: units.appendingPathComponent(slot.template), encoding: .utf8)
            #expect(!slot.instance.isEmpty)
            // ...and boot starts slot a, as scripts/deploy's first deploy expects.
            #expect(enabled.contains(slot.systemdUnit) == (slot.slot == "a"), "\(slot.systemdUnit)")
            guard let socket = slot.socket, let liveSocket = slot.liveSocket else {
                #expect(slot.unit == "worker")
                #expect(!template.contains("--socket"))
                continue
            }
            let dropIn = try String(
                contentsOf: units.appendingPathComponent(slot.systemdUnit + ".d/10-route.conf"), encoding: .utf8)
            #expect(dropIn.contains("Environment=CASEHUG_ROUTE=\(slot.unit)\n"), "\(slot.systemdUnit)")
            // The socket scripts/deploy waits on is the one the unit's process creates...
            let execStart = try #require(template.split(separator: "\n").first { $0.hasPrefix("ExecStart=") })
            let command = execStart.replacingOccurrences(of: "\"$CASEHUG_ROUTE\"", with: slot.unit)
                .replacingOccurrences(of: "%i", with: slot.instance)
            #expect(command.contains(" --socket \(socket) "), "\(command) does not create \(socket)")
            // ...in a directory the unit may write, next to the symlink nginx connects to.
            let directory = (socket as NSString).deletingLastPathComponent
            #expect(dropIn.contains("ReadWritePaths=\(directory)\n"), "\(slot.systemdUnit)")
            #expect((liveSocket as NSString).deletingLastPathComponent == directory)
            let attributes = try manager.attributesOfItem(atPath: target.path + directory)
            #expect((attributes[.posixPermissions] as? Int) == 0o2750, "\(directory)")
            if slot.slot == "a" {
                #expect(
                    try manager.destinationOfSymbolicLink(atPath: target.path + liveSocket)
                        == (socket as NSString).lastPathComponent)
            }
            #expect(site.contains("server unix:\(liveSocket);"), "nginx connects elsewhere than \(liveSocket)")
        }
        // Boot starts the enabled (live) slots only: the target names no slot of its own.
        let casehugTarget = try String(contentsOf: units.appendingPathComponent("casehug.target"), encoding: .utf8)
        for dependency in ["Wants=", "Requires=", "BindsTo=", "Upholds="] {
            #expect(
                !casehugTarget.split(separator: "\n").contains { $0.hasPrefix(dependency) },
                "casehug.target \(dependency)")
        }
        // scripts/deploy has no unit names or socket paths of its own (only in its comments).
        let deploy = try Self.text("scripts/deploy").split(separator: "\n").filter {
            !$0.trimmingCharacters(in: .whitespaces).hasPrefix("#")
        }
        for name in ["casehug-route@", "casehug-worker@", "sockets/", ".sock\""] {
            #expect(!deploy.contains { $0.contains(name) }, "scripts/deploy spells \(name) itself")
        }
    }

    @Test("Every unit runs as an unprivileged user with the hardening settings, and there is none for the sandbox")
    func unitsAreHardened() throws {
        let directory = Self.root.appendingPathComponent("deploy/systemd")
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        #expect(names.filter { $0.hasSuffix(".service") } == ["casehug-route@.service", "casehug-worker@.service"])
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
        for line in accessLogs {
            let words = line.dropLast().split(separator: " ")
            #expect(line.hasSuffix(";") && words.count >= 3 && words[2] == "casehug_json", "\(line)")
        }
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
        // casehug-admin's argument placeholders (its usage and errors name them).
        "FIRM_ID", "JOB_ID",
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
