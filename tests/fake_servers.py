"""A JSON-over-HTTP server on 127.0.0.1 standing in for a model API in tests."""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator


@dataclasses.dataclass
class Reply:
    """One HTTP answer; `truncate` sends half the body under the full Content-Length, and
    `hang` never answers (until the server stops), as broken servers do."""

    status: int = 200
    body: dict | bytes = dataclasses.field(default_factory=dict)
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    truncate: bool = False
    hang: bool = False


# (path, request body) -> (HTTP status, response body), or a Reply
Respond = Callable[[str, dict], "tuple[int, dict] | Reply"]


class FakeServer:
    def __init__(self, respond: Respond):
        self.respond = respond
        self.requests: list[tuple[str, dict, dict]] = []  # (path, body, headers)
        self.times: list[float] = []  # time.monotonic() of each request's arrival
        self.url = ""
        self.stopping = threading.Event()


@contextlib.contextmanager
def serve(respond: Respond) -> Iterator[FakeServer]:
    server = FakeServer(respond)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            server.requests.append((self.path, body, dict(self.headers)))
            server.times.append(time.monotonic())
            reply = server.respond(self.path, body)
            if not isinstance(reply, Reply):
                reply = Reply(*reply)
            if reply.hang:
                server.stopping.wait(30)
                return
            data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data[: len(data) // 2] if reply.truncate else data)
            if reply.truncate:
                self.close_connection = True

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    server.url = f"http://127.0.0.1:{httpd.server_port}"
    try:
        yield server
    finally:
        server.stopping.set()
        httpd.shutdown()
