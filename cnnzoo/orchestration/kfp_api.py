"""How cnnzoo talks to a Kubeflow Pipelines API: credentials, a fast pre-flight check, the client.

Every command that talks to the KFP API (``submit``, ``upload``, ``status``,
``tensorboard --host``) builds a :class:`KfpConnection` with :func:`connect`, which
resolves the credentials the way ``kfp.Client`` takes them:

* a bearer token: ``--token``, else ``$CNNZOO_KFP_TOKEN``, else (inside a cluster) the
  projected ServiceAccount token kfp reads (``kfp.client.ServiceAccountTokenVolumeCredentials``:
  ``$KF_PIPELINES_SA_TOKEN_PATH`` or ``/var/run/secrets/kubeflow/pipelines/token``) when
  that file exists;
* a session cookie of the auth proxy (Dex / oauth2-proxy): ``--cookies`` or
  ``$CNNZOO_KFP_COOKIES``;
* a private CA bundle for https: ``--ca-cert FILE``.

Before the client is made, :func:`preflight` asks ``GET /apis/v2beta1/healthz`` once,
with the same credentials and a short timeout, without following redirects, so a
missing login, a login redirect, a wrong host or a server that is not KFP is one
``error:`` line within seconds (kfp's own check retries five times, 5 s apart, and
logs a traceback for each). A token or cookie is never printed: :meth:`KfpConnection.redact`
scrubs every message that leaves this module.
"""

from __future__ import annotations

import json
import logging
import os
import re
import ssl
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from cnnzoo.core.errors import CnnzooError, one_line

TOKEN_ENV = "CNNZOO_KFP_TOKEN"
COOKIES_ENV = "CNNZOO_KFP_COOKIES"
HEALTHZ_PATH = "/apis/v2beta1/healthz"
PREFLIGHT_TIMEOUT_S = 5.0
_LOGIN_HINT = (
    f"pass --token TOKEN or set {TOKEN_ENV} (on Kubeflow >= 1.9: kubectl create token "
    "default-editor -n <profile-namespace>), or --cookies with the auth proxy's session cookie"
)


@dataclass(frozen=True)
class KfpConnection:
    """Where the KFP API is and how to authenticate (the secrets never appear in ``repr``).

    Attributes:
        host: the API endpoint, ``http(s)://...`` without a trailing slash.
        namespace: the Kubeflow profile namespace (multi-user installs), or None.
        token: the bearer token, or None.
        token_source: where the token came from (``--token``, the environment variable,
            the ServiceAccount token file), for messages; never the token itself.
        sa_token_path: the projected ServiceAccount token file, when that is the source
            (kfp re-reads it on every request).
        cookies: the ``Cookie`` header value, or None.
        ca_cert: a CA bundle file for https, or None.
    """

    host: str
    namespace: str | None = None
    token: str | None = field(default=None, repr=False)
    token_source: str = ""
    sa_token_path: str | None = None
    cookies: str | None = field(default=None, repr=False)
    ca_cert: str | None = None

    def redact(self, text: str) -> str:
        """``text`` with the token and cookie values replaced by ``***``."""
        for secret in (self.token, self.cookies):
            if secret:
                text = text.replace(secret, "***")
        return text

    def headers(self) -> dict[str, str]:
        """The authentication headers a request to the API carries."""
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.cookies:
            headers["Cookie"] = self.cookies
        return headers


def _sa_token_path() -> str:
    """The ServiceAccount token file kfp's ``ServiceAccountTokenVolumeCredentials`` reads."""
    from kfp import client as kfp_client

    default = kfp_client.KF_PIPELINES_SA_TOKEN_PATH
    return os.environ.get(kfp_client.KF_PIPELINES_SA_TOKEN_ENV) or default


def connect(
    host: str,
    namespace: str | None = None,
    token: str | None = None,
    cookies: str | None = None,
    ca_cert: str | None = None,
) -> KfpConnection:
    """Check ``host`` and resolve the credentials (see the module docstring); contacts nothing.

    Raises:
        CnnzooError: a host that is not an http(s) URL, an empty token, a CA file that
            cannot be read.
    """
    if not isinstance(host, str) or not re.match(r"^https?://[^/\s]+", host):
        raise CnnzooError(f"--host {host!r}: expected an http:// or https:// URL")
    sa_path = None
    if token is not None:
        source = "--token"
    elif os.environ.get(TOKEN_ENV) is not None:
        token, source = os.environ[TOKEN_ENV], TOKEN_ENV
    else:
        source = ""
        path = _sa_token_path()
        if Path(path).is_file():
            try:
                token = Path(path).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as e:
                reason = one_line(e)
                raise CnnzooError(f"ServiceAccount token {path}: cannot read: {reason}") from None
            source, sa_path = f"the ServiceAccount token {path}", path
    if token is not None and (not token.strip() or any(c.isspace() for c in token.strip())):
        # Never echo the value: a mistyped token is still somebody's secret.
        raise CnnzooError(f"{source or '--token'}: empty, or contains whitespace")
    cookie_source = "--cookies"
    if cookies is None and os.environ.get(COOKIES_ENV) is not None:
        cookies, cookie_source = os.environ[COOKIES_ENV], COOKIES_ENV
    if cookies is not None and (not cookies.strip() or "\n" in cookies or "\r" in cookies):
        raise CnnzooError(f"{cookie_source}: expected 'name=value[; name2=value2]' on one line")
    if ca_cert is not None:
        if not Path(ca_cert).is_file():
            raise CnnzooError(f"--ca-cert {ca_cert}: no such file")
        try:
            ssl.create_default_context(cafile=ca_cert)
        except (ssl.SSLError, OSError, ValueError) as e:
            raise CnnzooError(f"--ca-cert {ca_cert}: not a PEM CA bundle ({one_line(e)})") from None
    return KfpConnection(
        host=host.rstrip("/"),
        namespace=namespace,
        token=token.strip() if token else None,
        token_source=source,
        sa_token_path=sa_path,
        cookies=cookies.strip() if cookies else None,
        ca_cert=ca_cert,
    )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a redirect is an answer here (a login page), not a place to go


def preflight(
    conn: KfpConnection, doing: str = "connecting to", timeout: float = PREFLIGHT_TIMEOUT_S
) -> dict:
    """One ``GET /apis/v2beta1/healthz`` with ``conn``'s credentials; its JSON on success.

    Args:
        conn: the endpoint and credentials.
        doing: what the caller is doing, for the message (``"<doing> <host> failed: ..."``).
        timeout: seconds to wait for the answer.

    Raises:
        CnnzooError: one line saying what to do: log in (401/403), the endpoint wants a
            login (a redirect), it cannot be reached, or it is not a KFP API.
    """
    url = conn.host + HEALTHZ_PATH
    handlers: list = [_NoRedirect()]
    if url.startswith("https://"):
        context = ssl.create_default_context(cafile=conn.ca_cert)
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(url, headers=conn.headers())
    try:
        with opener.open(request, timeout=timeout) as response:
            status, body = response.status, response.read(65536)
            ctype = response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        reason = _refusal(conn, e.code, e.headers.get("Location"))
        raise CnnzooError(conn.redact(f"{doing} {conn.host} failed: {reason}")) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise CnnzooError(
            conn.redact(f"{doing} {conn.host} failed: cannot connect ({one_line(str(reason))})")
        ) from None
    try:
        health = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        health = None
    if status != 200 or not isinstance(health, dict):
        what = "an HTML page" if "html" in ctype.lower() else f"{ctype or 'no content type'}"
        raise CnnzooError(
            f"{doing} {conn.host} failed: not a Kubeflow Pipelines API: GET {HEALTHZ_PATH} "
            f"answered {status} with {what}, not KFP's JSON (is --host the pipelines endpoint, "
            "e.g. a port-forward of ml-pipeline-ui, or the Kubeflow dashboard URL + /pipeline?)"
        )
    return health


def _refusal(conn: KfpConnection, status: int, location: str | None) -> str:
    """The error line for a non-2xx answer of the healthz request."""
    if status in (401, 403):
        if conn.token or conn.cookies:
            used = conn.token_source if conn.token else "--cookies"
            return (
                f"it refused the credentials from {used} ({status}): the token or "
                f"cookie is wrong or expired, or lacks access to the namespace; {_LOGIN_HINT}"
            )
        return f"it answered {status}: it wants a login; {_LOGIN_HINT}"
    if 300 <= status < 400:
        where = f" ({location})" if location else ""
        return f"it redirects to a login page{where}: the endpoint wants a login; {_LOGIN_HINT}"
    return (
        f"not a Kubeflow Pipelines API: GET {HEALTHZ_PATH} answered {status} "
        "(is --host the pipelines endpoint?)"
    )


def client(conn: KfpConnection, doing: str = "connecting to", check: bool = True):
    """A ``kfp.Client`` for ``conn`` (after :func:`preflight`, unless ``check`` is False).

    Raises:
        CnnzooError: as :func:`preflight`, or the client could not be made.
    """
    import kfp
    from kfp.client import ServiceAccountTokenVolumeCredentials

    if check:
        preflight(conn, doing)
    kwargs: dict = {"host": conn.host, "namespace": conn.namespace}
    if conn.sa_token_path:
        # kfp re-reads the projected token (the kubelet rotates it).
        kwargs["credentials"] = ServiceAccountTokenVolumeCredentials(conn.sa_token_path)
    elif conn.token:
        kwargs["existing_token"] = conn.token
    if conn.cookies:
        kwargs["cookies"] = conn.cookies
    if conn.ca_cert:
        kwargs["ssl_ca_cert"] = conn.ca_cert
    try:
        with warnings.catch_warnings(), _quiet_kfp_logging():
            # "This client only works with Kubeflow Pipeline v2.0.0-beta.2 and later"
            warnings.filterwarnings("ignore", category=FutureWarning, module="kfp.client")
            return kfp.Client(**kwargs)
    except Exception as e:  # urllib3 errors, kfp_server_api.ApiException, TimeoutError
        raise CnnzooError(api_error(conn, doing, e)) from None


class _quiet_kfp_logging:
    """Keep kfp's per-retry ``logging.exception`` tracebacks off stderr (errors are raised)."""

    def __enter__(self):
        self.logger = logging.getLogger()
        self.level = self.logger.level
        self.logger.setLevel(logging.CRITICAL)
        return self

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)


def api_error(conn: KfpConnection, doing: str, e: BaseException) -> str:
    """One redacted line for an exception of the KFP client while ``doing`` something."""
    status = getattr(e, "status", None)
    if status in (401, 403) or (isinstance(status, int) and 300 <= status < 400):
        headers = getattr(e, "headers", None) or {}
        reason = _refusal(conn, status, headers.get("Location"))
        return conn.redact(f"{doing} {conn.host} failed: {reason}")
    return conn.redact(f"{doing} {conn.host} failed: {one_line(e, first=True)}")
