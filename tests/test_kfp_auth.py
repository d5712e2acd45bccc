"""Talking to a KFP API behind an auth proxy: tokens, cookies, the ServiceAccount token,
and one fast error line for a missing login, a login redirect, a wrong host, or a server
that is not KFP (``cnnzoo.orchestration.kfp_api``)."""

from __future__ import annotations

import json
import time

import pytest
from kfp_fixtures import AuthProxy, FakeKfp, FakeKfpRuns, NotKfp

from cnnzoo.cli.main import main
from cnnzoo.core.errors import CnnzooError
from cnnzoo.orchestration.kfp_api import connect

TOKEN = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2Vu.sig-4711"
COOKIE = "MTcwMDAwMDAwMHxzZXNzaW9uLWNvb2tpZQ"
IMAGES = ["--image", "registry.test/cnnzoo:t9", "--gpu-image", "registry.test/cnnzoo-gpu:t9"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for var in ("CNNZOO_KFP_TOKEN", "CNNZOO_KFP_COOKIES", "CNNZOO_IMAGE", "CNNZOO_GPU_IMAGE"):
        monkeypatch.delenv(var, raising=False)
    # no ServiceAccount token unless a test puts one there
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "no-sa-token"))


def _proxy(login_redirect=False):
    return AuthProxy(FakeKfp(), TOKEN, COOKIE, login_redirect=login_redirect)


def _submit(proxy, *args):
    return main(["submit", "--host", proxy.url, *IMAGES, *args])


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ")
    return lines[0]


def _run_posts(proxy):
    return [r for r in proxy.inner.requests if r.method == "POST" and r.path.endswith("/runs")]


@pytest.mark.parametrize("where", ["option", "environment"])
def test_a_token_is_sent_as_bearer_and_never_shown(capsys, monkeypatch, where):
    with _proxy() as proxy:
        if where == "option":
            rc = _submit(proxy, "--token", TOKEN)
        else:
            monkeypatch.setenv("CNNZOO_KFP_TOKEN", TOKEN)
            rc = _submit(proxy)
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "run id: run-1234" in captured.out
    # every request the client made carried the header, the run creation included
    assert proxy.requests and all(
        r.headers.get("authorization") == f"Bearer {TOKEN}" for r in proxy.requests
    )
    (run,) = _run_posts(proxy)
    assert TOKEN not in json.dumps(run.body), "the token must not reach the compiled pipeline"
    assert TOKEN not in captured.out + captured.err


def test_without_a_login_one_line_within_seconds_naming_the_token(capsys):
    with _proxy() as proxy:
        start = time.monotonic()
        rc = _submit(proxy)
        seconds = time.monotonic() - start
    line = _one_error_line(capsys)
    assert rc == 1
    assert seconds < 10, f"took {seconds:.1f} s (kfp's healthz retries take 25 s)"
    assert f"submitting to {proxy.url} failed: it answered 401" in line
    assert "--token" in line and "CNNZOO_KFP_TOKEN" in line
    assert not _run_posts(proxy) and len(proxy.requests) == 1  # one healthz, no retries


def test_a_wrong_token_is_refused_without_echoing_it(capsys):
    wrong = "not-the-right-token-0815"
    with _proxy() as proxy:
        rc = _submit(proxy, "--token", wrong)
    line = _one_error_line(capsys)
    assert rc == 1
    assert "refused the credentials from --token (401)" in line
    assert wrong not in line
    assert proxy.requests[0].headers["authorization"] == f"Bearer {wrong}"


def test_a_login_redirect_says_the_endpoint_wants_a_login_and_a_cookie_passes(capsys):
    with _proxy(login_redirect=True) as proxy:
        assert _submit(proxy) == 1
        line = _one_error_line(capsys)
        assert "redirects to a login page" in line and "/dex/auth" in line
        assert "--cookies" in line and "--token" in line

        rc = _submit(proxy, "--cookies", f"authservice_session={COOKIE}")
        captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert _run_posts(proxy)
    assert all(
        f"authservice_session={COOKIE}" in r.headers.get("cookie", "") for r in proxy.requests[1:]
    )
    assert COOKIE not in captured.out + captured.err


def test_the_in_cluster_serviceaccount_token_is_used_when_present(capsys, monkeypatch, tmp_path):
    token_file = tmp_path / "sa-token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token_file))
    with _proxy() as proxy:
        rc = _submit(proxy)
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in proxy.requests)
    assert _run_posts(proxy)


def test_the_option_wins_over_the_environment(capsys, monkeypatch):
    monkeypatch.setenv("CNNZOO_KFP_TOKEN", "stale-token")
    with _proxy() as proxy:
        assert _submit(proxy, "--token", TOKEN) == 0
    capsys.readouterr()
    assert {r.headers["authorization"] for r in proxy.requests} == {f"Bearer {TOKEN}"}


def test_a_server_that_is_not_kfp_is_one_line_without_tracebacks(capsys):
    with NotKfp() as server:
        start = time.monotonic()
        rc = _submit(server)
        seconds = time.monotonic() - start
    line = _one_error_line(capsys)  # also: nothing else on stderr (no kfp tracebacks)
    assert rc == 1 and seconds < 10
    assert "not a Kubeflow Pipelines API" in line and "HTML page" in line
    assert len(server.requests) == 1


def test_a_closed_port_says_it_cannot_connect(capsys):
    with FakeKfp() as server:
        url = server.url
    start = time.monotonic()
    assert main(["submit", "--host", url, *IMAGES]) == 1
    assert time.monotonic() - start < 10
    line = _one_error_line(capsys)
    assert f"submitting to {url} failed: cannot connect" in line


def test_tensorboard_host_sends_the_token(capsys, monkeypatch):
    runs = FakeKfpRuns({"r1": {"output_uri": "gs://bkt/out", "tensorboard_root": ""}})
    with AuthProxy(runs, TOKEN, COOKIE) as proxy:
        # without the token: the login line, not a kfp retry loop
        rc = main(["tensorboard", "r1", "--host", proxy.url, "--port", "0"])
        assert rc == 1
        assert "it answered 401" in _one_error_line(capsys)
        # with it, the run is read (serving gs:// needs GCS, so stop at the logs root)
        from cnnzoo.orchestration.kfp_runs import run_logs_root_from_kfp

        conn = connect(proxy.url, token=TOKEN)
        assert run_logs_root_from_kfp("r1", conn) == "gs://bkt/out/tensorboard"
    assert runs.requests and all(
        r.headers["authorization"] == f"Bearer {TOKEN}" for r in runs.requests
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"token": ""}, "--token: empty, or contains whitespace"),
        ({"token": "two words"}, "--token: empty, or contains whitespace"),
        ({"ca_cert": "/nonexistent/ca.pem"}, "--ca-cert /nonexistent/ca.pem: no such file"),
        ({"cookies": "a=b\nc=d"}, "--cookies: expected"),
    ],
)
def test_bad_credentials_options_are_refused_offline(kwargs, message):
    with pytest.raises(CnnzooError, match=message) as info:
        connect("http://127.0.0.1:9", **kwargs)
    assert "two words" not in str(info.value)


def test_ca_cert_that_is_not_pem(tmp_path):
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(CnnzooError, match="not a PEM CA bundle"):
        connect("https://127.0.0.1:9", ca_cert=str(bad))


def test_repr_of_a_connection_hides_the_secrets():
    conn = connect("http://127.0.0.1:9", token=TOKEN, cookies=f"authservice_session={COOKIE}")
    assert TOKEN not in repr(conn) and COOKIE not in repr(conn)
    assert conn.redact(f"x {TOKEN} y authservice_session={COOKIE}") == "x *** y ***"
