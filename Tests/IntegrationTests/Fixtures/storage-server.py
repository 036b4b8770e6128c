"""A stand-in for an HTTP document store (Supabase Storage or a signed gateway), python3 stdlib.

    python3 storage-server.py ROOT      (key, if any, in the STORAGE_TEST_KEY environment variable)

Prints its TCP port on the first stdout line and exits when stdin reaches EOF.
  GET /bucket/<path>    the file ROOT/<path> (percent-decoded), streamed; 404 when absent;
                        401 unless `Authorization: Bearer <key>` when a key is set
  GET /supabase/<path>  the same, but a missing file is Supabase's 400 {"statusCode": "404"}
  GET /fail/<path>      503
  GET /stall/<path>     half of a 100000-byte body, then a 3 s pause
  GET /_requests        every request so far: [{"path", "headers"}]
"""
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

ROOT = sys.argv[1]
KEY = os.environ.get("STORAGE_TEST_KEY", "")
REQUESTS = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", content_type="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/_requests":
            return self.reply(200, json.dumps(REQUESTS).encode(), "application/json")
        REQUESTS.append({"path": self.path, "headers": [[k, v] for k, v in self.headers.items()]})
        if KEY and self.headers.get("Authorization") != "Bearer " + KEY:
            return self.reply(401, b'{"error": "unauthorized"}', "application/json")
        prefix, _, rest = self.path[1:].partition("/")
        if prefix == "fail":
            return self.reply(503, b"down")
        if prefix == "stall":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"s" * 50000)
            self.wfile.flush()
            time.sleep(3)
            self.wfile.write(b"s" * 50000)
            return
        path = os.path.join(ROOT, unquote(rest))
        if prefix not in ("bucket", "supabase") or not os.path.isfile(path):
            if prefix == "supabase":
                body = b'{"statusCode": "404", "error": "not_found", "message": "Object not found"}'
                return self.reply(400, body, "application/json")
            return self.reply(404, b"not found")
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(os.path.getsize(path)))
        self.end_headers()
        with open(path, "rb") as source:
            while chunk := source.read(1 << 16):
                self.wfile.write(chunk)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


def main():
    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.buffer.read()
    os._exit(0)


main()
