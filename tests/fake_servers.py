"""A JSON-over-HTTP server on 127.0.0.1 standing in for a model API in tests."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from collections.abc import Callable, Iterator

# (path, request body) -> (HTTP status, response body)
Respond = Callable[[str, dict], tuple[int, dict]]


class FakeServer:
    def __init__(self, respond: Respond):
        self.respond = respond
        self.requests: list[tuple[str, dict, dict]] = []  # (path, body, headers)
        self.url = ""


@contextlib.contextmanager
def serve(respond: Respond) -> Iterator[FakeServer]:
    server = FakeServer(respond)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            server.requests.append((self.path, body, dict(self.headers)))
            status, payload = server.respond(self.path, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    server.url = f"http://127.0.0.1:{httpd.server_port}"
    try:
        yield server
    finally:
        httpd.shutdown()
