"""Local HTTP test server for HTTPClientTests (python3 stdlib only).

Listens on 127.0.0.1:<ephemeral> and, if argv[1] is given, on that Unix socket path.
Prints the TCP port as the first stdout line. Exits when stdin reaches EOF, so it dies
with the test process that holds the other end of the pipe.
"""
import base64
import hashlib
import json
import os
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit


STORED = {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the client can reuse connections

    def setup(self):
        # Headers and body are separate writes: without TCP_NODELAY each keep-alive request
        # can stall ~40 ms on delayed ACKs. Not applicable to the Unix socket.
        self.disable_nagle_algorithm = isinstance(self.client_address, tuple)
        super().setup()

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if status >= 200 and status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and status >= 200 and status not in (204, 304):
            self.wfile.write(body)

    def handle_any(self):
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query))
        length = int(self.headers.get("Content-Length") or 0)
        if url.path.startswith("/store/"):
            return self.store(url.path[len("/store/"):], length)
        body = self.rfile.read(length) if length else b""
        if url.path == "/echo":
            peer = self.client_address[1] if isinstance(self.client_address, tuple) else None
            payload = {
                "method": self.command,
                "path": url.path,
                "query": url.query,
                "params": parse_qsl(url.query, keep_blank_values=True),
                "headers": [[k, v] for k, v in self.headers.items()],
                "body": base64.b64encode(body).decode(),
                "peerPort": peer,
            }
            self.reply(200, json.dumps(payload).encode(), [("Content-Type", "application/json")])
        elif url.path.startswith("/status/"):
            status = int(url.path.split("/")[2])
            extra = [("Retry-After", "7")] if status == 429 else []
            self.reply(status, ("status %d" % status).encode(), extra)
        elif url.path == "/redirect":
            self.reply(302, b"", [("Location", "/echo")])
        elif url.path == "/slow":
            time.sleep(int(query.get("ms", "1000")) / 1000)
            self.reply(200, b"slow")
        elif url.path == "/big":
            count = int(query.get("bytes", "0"))
            self.send_response(200)
            self.send_header("Content-Length", str(count))
            self.end_headers()
            chunk = b"x" * 65536
            while count > 0:
                self.wfile.write(chunk[: min(count, len(chunk))])
                count -= len(chunk)
        elif url.path in ("/stall", "/truncate"):
            # Half the body, then a pause (/stall) or a hang-up (/truncate) before the rest.
            count = int(query.get("bytes", "0"))
            self.send_response(200)
            self.send_header("Content-Length", str(count))
            self.end_headers()
            self.wfile.write(b"s" * (count // 2))
            self.wfile.flush()
            if url.path == "/truncate":
                self.close_connection = True
                return
            time.sleep(int(query.get("ms", "1000")) / 1000)
            self.wfile.write(b"s" * (count - count // 2))
        elif url.path == "/interim":
            # A 103 Early Hints block before the final response: only the latter's headers count.
            self.wfile.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n")
            self.reply(200, b"final", [("X-Final", "yes")])
        elif url.path == "/close":
            self.close_connection = True  # hang up without answering
        else:
            self.reply(404, b"no such endpoint")

    def store(self, key, length):
        """PUT /store/KEY keeps the body (read in chunks, as it streams in) and answers its size,
        SHA-256 and request headers; GET /store/KEY answers the bytes kept."""
        if self.command == "GET":
            data = STORED.get(key)
            if data is None:
                return self.reply(404, b"not stored")
            return self.reply(200, data, [("Content-Type", "application/octet-stream")])
        digest = hashlib.sha256()
        chunks = []
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                break
            digest.update(chunk)
            chunks.append(chunk)
            remaining -= len(chunk)
        STORED[key] = b"".join(chunks)
        payload = {
            "method": self.command,
            "bytes": length - remaining,
            "sha256": digest.hexdigest(),
            "headers": [[k, v] for k, v in self.headers.items()],
        }
        self.reply(200, json.dumps(payload).encode(), [("Content-Type", "application/json")])

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = handle_any


class UnixServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


class TCPServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # clients aborting (/big, timeouts) are expected


def main():
    tcp = TCPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=tcp.serve_forever, daemon=True).start()
    if len(sys.argv) > 1:
        if os.path.exists(sys.argv[1]):
            os.unlink(sys.argv[1])
        unix = UnixServer(sys.argv[1], Handler)
        threading.Thread(target=unix.serve_forever, daemon=True).start()
    print(tcp.server_address[1], flush=True)
    sys.stdin.buffer.read()  # parent-death guard: returns at EOF
    if len(sys.argv) > 1:
        try:
            os.unlink(sys.argv[1])
        except OSError:
            pass
    os._exit(0)


main()
