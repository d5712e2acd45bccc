"""Loopback JSON API servers for tests: one small base, and a fake KFP v2beta1 runs API.

:class:`LoopbackServer` binds 127.0.0.1 on a free port, records every request as a
:class:`Request` and answers each with the JSON its :meth:`~LoopbackServer.route` returns;
a fake API is a subclass that overrides ``route``. It serves inside a ``with`` block and
stops when the block ends. The fakes of the KFP API (``test_submit``), of the Kubernetes
API (``test_tensorboard_cr``) and :class:`FakeKfpRuns` here are built on it.

:class:`FakeKfpRuns` answers what ``kfp.Client().get_run`` asks
(``GET /apis/v2beta1/runs/<id>``) for the runs a test registers
(``runs[run_id] = {pipeline parameters}``), and 404 for any other.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


@dataclass
class Request:
    """One request a :class:`LoopbackServer` received."""

    method: str
    path: str  # without the query string
    query: dict[str, list[str]]
    body: Any  # the parsed JSON body, or None
    content_type: str | None


class LoopbackServer:
    """A JSON HTTP server on 127.0.0.1; subclasses answer through :meth:`route`."""

    def __init__(self):
        self.requests: list[Request] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                url = urlparse(self.path)
                request = Request(
                    method=self.command,
                    path=url.path,
                    query=parse_qs(url.query),
                    body=json.loads(raw) if raw else None,
                    content_type=self.headers.get("Content-Type"),
                )
                owner.requests.append(request)
                status, reply = owner.route(request)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def route(self, request: Request) -> tuple[int, Any]:
        """The status and JSON body that answer ``request``."""
        raise NotImplementedError

    def calls(self) -> list[tuple[str, str]]:
        """(method, path) of every request so far, in order."""
        return [(r.method, r.path) for r in self.requests]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class FakeKfpRuns(LoopbackServer):
    """Runs by ID, as a KFP v2 backend reports them."""

    def __init__(self, runs: dict[str, dict] | None = None):
        super().__init__()
        self.runs: dict[str, dict] = dict(runs or {})

    def route(self, request: Request) -> tuple[int, Any]:
        if request.method == "GET" and request.path == "/apis/v2beta1/healthz":
            return 200, {"commit_sha": "test", "tag_name": "2.5.0"}
        prefix = "/apis/v2beta1/runs/"
        run_id = request.path.removeprefix(prefix) if request.path.startswith(prefix) else None
        if request.method == "GET" and run_id in self.runs:
            return 200, {
                "run_id": run_id,
                "display_name": f"study {run_id}",
                "state": "SUCCEEDED",
                "runtime_config": {"parameters": self.runs[run_id]},
            }
        return 404, {"error": "run not found", "code": 5}
