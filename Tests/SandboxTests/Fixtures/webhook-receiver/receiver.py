"""Webhook receiver for WebhooksTests (python3 stdlib only).

Usage: receiver.py <requests.jsonl>
Listens on 127.0.0.1:<ephemeral>, prints the port as the first stdout line, and appends one
JSON line per request ({method, path, headers: [[name, value]], body, status}) to the file,
flushed before answering, so a caller that got the answer can read the line. Answers by path:
  /ok/...          200
  /fail/...        500 always
  /flaky/N/...     500 for the first N requests to that exact path, then 200
  anything else    404
Exits when stdin reaches EOF (the test process died) or on SIGTERM.
"""
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG = open(sys.argv[1], "a", encoding="utf-8")
LOCK = threading.Lock()
SEEN = {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.answer()

    def do_GET(self):
        self.answer()

    def do_PUT(self):
        self.answer()

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        with LOCK:
            count = SEEN.get(self.path, 0)
            SEEN[self.path] = count + 1
            if parts[:1] == ["ok"]:
                status = 200
            elif parts[:1] == ["fail"]:
                status = 500
            elif parts[:1] == ["flaky"] and len(parts) > 1 and parts[1].isdigit():
                status = 500 if count < int(parts[1]) else 200
            else:
                status = 404
            LOG.write(json.dumps({
                "method": self.command,
                "path": self.path,
                "headers": [[k, v] for k, v in self.headers.items()],
                "body": body.decode("utf-8", "replace"),
                "status": status,
            }) + "\n")
            LOG.flush()
        reply = b"{}"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


def main():
    # A child of the test process may start with signals blocked: let SIGTERM work.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    try:
        sys.stdin.read()  # returns at EOF
    except KeyboardInterrupt:
        pass
    server.shutdown()


if __name__ == "__main__":
    main()
