"""A loopback server speaking the KFP v2beta1 runs API: ``GET /apis/v2beta1/runs/<id>``.

It answers what ``kfp.Client().get_run`` asks for cluster runs the test registers
(``runs[run_id] = {pipeline parameters}``), 404 for any other, and records every request.
Bound to 127.0.0.1 on a free port; stop it by leaving the ``with`` block.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeKfpRuns:
    """Runs by ID, as a KFP v2 backend reports them."""

    def __init__(self, runs: dict[str, dict] | None = None):
        self.runs: dict[str, dict] = dict(runs or {})
        self.requests: list[tuple[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                path = self.path.split("?")[0]
                fake.requests.append(("GET", path))
                if path == "/apis/v2beta1/healthz":
                    return self._reply(200, {"commit_sha": "test", "tag_name": "2.5.0"})
                prefix = "/apis/v2beta1/runs/"
                run_id = path[len(prefix) :] if path.startswith(prefix) else None
                if run_id in fake.runs:
                    return self._reply(
                        200,
                        {
                            "run_id": run_id,
                            "display_name": f"study {run_id}",
                            "state": "SUCCEEDED",
                            "runtime_config": {"parameters": fake.runs[run_id]},
                        },
                    )
                return self._reply(404, {"error": "run not found", "code": 5})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
