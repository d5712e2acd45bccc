"""Loopback JSON API servers for tests: one small base, and a fake KFP v2beta1 runs API.

:class:`LoopbackServer` binds 127.0.0.1 on a free port, records every request as a
:class:`Request` and answers each with the JSON its :meth:`~LoopbackServer.route` returns;
a fake API is a subclass that overrides ``route``. It serves inside a ``with`` block and
stops when the block ends. The fakes of the KFP API (``test_submit``), of the Kubernetes
API (``test_tensorboard_cr``) and :class:`FakeKfpRuns` here are built on it.

:class:`AuthProxy` puts a fake API behind what a Kubeflow auth proxy answers: 401 (or,
with ``login_redirect``, a 302 to ``/dex/auth``) unless the request carries the right
bearer token or session cookie.

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
    body: Any  # the parsed JSON body, the raw bytes of a non-JSON one, or None
    content_type: str | None
    headers: dict[str, str] | None = None  # every request header, names lower-cased


def _body(raw: bytes, content_type: str | None) -> Any:
    """A request body: parsed JSON, the raw bytes of anything else (a multipart upload)."""
    if not raw:
        return None
    if content_type and "json" not in content_type:
        return raw
    return json.loads(raw)


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
                    body=_body(raw, self.headers.get("Content-Type")),
                    content_type=self.headers.get("Content-Type"),
                    headers={k.lower(): v for k, v in self.headers.items()},
                )
                owner.requests.append(request)
                status, reply, *extra = owner.route(request)
                headers = extra[0] if extra else {}
                if isinstance(reply, str):  # a page, not JSON
                    data = reply.encode()
                    headers.setdefault("Content-Type", "text/html; charset=utf-8")
                else:
                    data = json.dumps(reply).encode()
                    headers.setdefault("Content-Type", "application/json")
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def route(self, request: Request) -> tuple:
        """The status and JSON body (or an HTML text) that answer ``request``, optionally
        followed by a dict of response headers."""
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


class FakeKfp(LoopbackServer):
    """Records requests; answers healthz, experiments (get/create) and run creation."""

    def __init__(self):
        super().__init__()
        self.experiments: dict[str, dict] = {}

    def route(self, request: Request) -> tuple[int, dict]:
        path, body = request.path, request.body or {}
        if request.method == "GET" and path == "/apis/v2beta1/healthz":
            return 200, {"commit_sha": "test", "tag_name": "2.5.0"}
        if request.method == "GET" and path == "/apis/v2beta1/experiments":
            filt = json.loads(request.query.get("filter", ["{}"])[0])
            wanted = [
                p.get("string_value") or p.get("stringValue") for p in filt.get("predicates", [])
            ]
            found = [e for n, e in self.experiments.items() if n in wanted]
            return 200, {"experiments": found, "total_size": len(found)}
        if request.method == "GET" and path.startswith("/apis/v2beta1/experiments/"):
            exp_id = path.rsplit("/", 1)[-1]
            for e in self.experiments.values():
                if e["experiment_id"] == exp_id:
                    return 200, e
        if request.method == "POST" and path == "/apis/v2beta1/experiments":
            exp = {
                "experiment_id": f"exp-{len(self.experiments) + 1}",
                "display_name": body.get("display_name"),
                "namespace": body.get("namespace"),
            }
            self.experiments[exp["display_name"]] = exp
            return 200, exp
        if request.method == "POST" and path == "/apis/v2beta1/runs":
            return 200, dict(body, run_id="run-1234", state="PENDING")
        return 404, {"error": "not found", "code": 5}


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


class AuthProxy(LoopbackServer):
    """``inner``'s answers behind an auth proxy (Kubeflow's oauth2-proxy / Dex).

    A request passes with ``Authorization: Bearer <token>`` or the cookie
    ``authservice_session=<cookie>``; otherwise it gets 401 (an API client without a
    login), or with ``login_redirect`` a 302 to the Dex login page. ``inner`` is a
    :class:`LoopbackServer` whose ``route`` answers the passed requests (it is not started).
    """

    def __init__(self, inner: LoopbackServer, token: str, cookie: str, login_redirect=False):
        super().__init__()
        self.inner, self.token, self.cookie = inner, token, cookie
        self.login_redirect = login_redirect

    def route(self, request: Request) -> tuple:
        headers = request.headers or {}
        cookies = [c.strip() for c in headers.get("cookie", "").split(";")]
        if (
            headers.get("authorization") == f"Bearer {self.token}"
            or f"authservice_session={self.cookie}" in cookies
        ):
            self.inner.requests.append(request)
            return self.inner.route(request)
        if self.login_redirect:
            location = f"{self.url}/dex/auth?client_id=kubeflow-oidc-authservice&state=x"
            return 302, "<a href='/dex/auth'>Found</a>", {"Location": location}
        return 401, {"error": "Unauthorized"}


class NotKfp(LoopbackServer):
    """A web server that is not KFP: an HTML page for every path."""

    def route(self, request: Request) -> tuple:
        return 200, "<html><body>It works!</body></html>"


def task_detail(task_id, name, state, parent=None, start=None, end=None, error=None) -> dict:
    """A ``V2beta1PipelineTaskDetail`` as the KFP API sends it (times in seconds past 12:00)."""
    detail = {"task_id": task_id, "display_name": name, "state": state, "run_id": "run-1234"}
    if parent:
        detail["parent_task_id"] = parent
    if start is not None:
        detail["start_time"] = f"2026-01-01T12:{start // 60:02d}:{start % 60:02d}Z"
    if end is not None:
        detail["end_time"] = f"2026-01-01T12:{end // 60:02d}:{end % 60:02d}Z"
    if error:
        detail["error"] = {"code": 2, "message": error}
    return detail


class FakeKfpFollow(FakeKfp):
    """:class:`FakeKfp` whose created run then changes: each ``GET`` of it answers the next
    snapshot of ``script`` (``(run state, [task_detail(...)])``), the last one for good."""

    def __init__(self, script: list[tuple[str, list[dict]]], parameters: dict | None = None):
        super().__init__()
        self.script = script
        self.parameters = parameters  # of a run not created here (cnnzoo status)
        self.reads = 0

    def route(self, request: Request) -> tuple:
        if request.method == "POST" and request.path == "/apis/v2beta1/runs":
            self.parameters = request.body["runtime_config"]["parameters"]
        if request.method == "GET" and request.path == "/apis/v2beta1/runs/run-1234":
            state, tasks = self.script[min(self.reads, len(self.script) - 1)]
            self.reads += 1
            return 200, {
                "run_id": "run-1234",
                "display_name": "study",
                "state": state,
                "runtime_config": {"parameters": self.parameters or {}},
                "run_details": {"task_details": tasks},
            }
        return super().route(request)


class FakeKfpPipelines(FakeKfp):
    """:class:`FakeKfp` with the pipeline registry: list by name, upload, upload a version.

    ``pipelines[name] = {"pipeline_id", "versions": [version names]}``; an upload's file
    is kept in ``uploads`` (name, version name, YAML bytes). A version name a pipeline
    already has is refused with 409, as the backend refuses it.
    """

    def __init__(self):
        super().__init__()
        self.pipelines: dict[str, dict] = {}
        self.uploads: list[tuple[str, str, bytes]] = []

    @staticmethod
    def _file(body: bytes) -> bytes:
        start = body.index(b"\r\n\r\n") + 4
        return body[start : body.rindex(b"\r\n--")]

    def route(self, request: Request) -> tuple:
        path, query = request.path, request.query
        if request.method == "GET" and path == "/apis/v2beta1/pipelines":
            filt = json.loads(query.get("filter", ["{}"])[0])
            wanted = [p.get("string_value") or p.get("stringValue") for p in filt["predicates"]]
            found = [
                {"pipeline_id": p["pipeline_id"], "display_name": n}
                for n, p in self.pipelines.items()
                if n in wanted
            ]
            return 200, {"pipelines": found, "total_size": len(found)}
        if request.method == "POST" and path == "/apis/v2beta1/pipelines/upload":
            name = query["name"][0]
            if name in self.pipelines:
                return 409, {"error": f"pipeline {name} already exists", "code": 6}
            pid = f"pipe-{len(self.pipelines) + 1}"
            self.pipelines[name] = {"pipeline_id": pid, "versions": [name]}
            self.uploads.append((name, name, self._file(request.body)))
            return 200, {"pipeline_id": pid, "display_name": name}
        if request.method == "POST" and path == "/apis/v2beta1/pipelines/upload_version":
            version, pid = query["name"][0], query["pipelineid"][0]
            name, pipeline = next(
                (n, p) for n, p in self.pipelines.items() if p["pipeline_id"] == pid
            )
            if version in pipeline["versions"]:
                return 409, {"error": f"version {version} already exists", "code": 6}
            pipeline["versions"].append(version)
            self.uploads.append((name, version, self._file(request.body)))
            vid = f"{pid}-v{len(pipeline['versions'])}"
            return 200, {"pipeline_id": pid, "pipeline_version_id": vid, "display_name": version}
        return super().route(request)
