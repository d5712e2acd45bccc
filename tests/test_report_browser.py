"""The report opens in a real browser: headless Chromium, networking off, via DevTools.

Needs Debian's ``chromium``: ``make test`` installs it (``tools/system-deps.sh``, as root
with apt) or names it. Without it the test fails with instructions rather than skipping,
so a machine that lacks it cannot pass silently.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from fixtures.report_run import built_report
from PIL import Image

pytestmark = pytest.mark.browser

_CHROMIUM_NAMES = ("chromium", "chromium-browser")


def _chromium() -> str:
    for name in _CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(
        "headless Chromium not found (looked for 'chromium' on PATH): install Debian's "
        "chromium package, e.g. 'apt-get install -y chromium'"
    )


class _DevTools:
    """A minimal Chrome DevTools Protocol client over one page's websocket."""

    def __init__(self, ws_url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.events: list[dict] = []
        self._next = 0

    def call(self, method: str, **params):
        self._next += 1
        msg_id = self._next
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, method: str, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, ev in enumerate(self.events):
                if ev["method"] == method:
                    return self.events.pop(i)
            self.events.append(json.loads(self.ws.recv()))
        raise AssertionError(f"no {method} within {timeout} s")

    def evaluate(self, expression: str):
        res = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in res:
            raise AssertionError(f"page script failed: {res['exceptionDetails']}")
        return res["result"]["value"]

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def browser(tmp_path):
    """A headless Chromium with remote debugging, and a DevTools client on its page."""
    exe = _chromium()
    profile = tmp_path / "chromium-profile"
    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        "--mute-audio",
        "--window-size=1300,900",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "about:blank",
    ]
    log = (tmp_path / "chromium.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    client = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                tail = (tmp_path / "chromium.log").read_text(errors="replace")[-800:]
                pytest.fail(f"chromium did not start its DevTools server: {tail}")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            targets = json.load(r)
        page = next(t for t in targets if t["type"] == "page")
        client = _DevTools(page["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Log", "Network"):
            client.call(f"{domain}.enable")
        client.call(
            "Network.emulateNetworkConditions",
            offline=True,
            latency=0,
            downloadThroughput=-1,
            uploadThroughput=-1,
        )
        yield client
    finally:
        if client is not None:
            client.close()
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _load(client: _DevTools, path: Path) -> None:
    client.events.clear()
    client.call("Page.navigate", url=path.resolve().as_uri())
    client.wait_event("Page.loadEventFired")


def _problems(client: _DevTools) -> list[str]:
    """Console errors, uncaught exceptions and any request that left the local disk."""
    found = []
    for ev in client.events:
        m, p = ev["method"], ev.get("params", {})
        if m == "Runtime.exceptionThrown":
            found.append(f"exception: {p['exceptionDetails'].get('text')}")
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            found.append(f"console.{p['type']}: {[a.get('value') for a in p.get('args', [])]}")
        elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
            found.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        elif m == "Network.requestWillBeSent":
            url = p["request"]["url"]
            if not url.startswith(("file:", "data:")):
                found.append(f"network request: {url}")
        elif m == "Network.loadingFailed":
            found.append(f"failed to load: {p.get('errorText')}")
    return found


_STATE_JS = """
(async () => {
  const imgs = [...document.images];
  await Promise.all(imgs.map(i => i.decode().catch(() => null)));
  const best = document.querySelector('#results tbody tr.best');
  const table = document.querySelector('#results');
  return {
    rows: document.querySelectorAll('#results tbody tr').length,
    failed: document.querySelectorAll('#failed-table tr.failed').length,
    tableWidth: table ? table.getBoundingClientRect().width : 0,
    bestBackground: best ? getComputedStyle(best.querySelector('td')).backgroundColor : null,
    images: imgs.map(i => ({id: i.id, complete: i.complete, w: i.naturalWidth,
                            h: i.naturalHeight, shown: i.getBoundingClientRect().width})),
    height: document.documentElement.scrollHeight,
  };
})()
"""


def test_report_renders_in_headless_chromium(browser, tmp_path_factory, tmp_path):
    evals, paths, _ = built_report(tmp_path_factory.mktemp("browser-report"))
    _load(browser, Path(paths["html"]))
    state = browser.evaluate(_STATE_JS)

    assert state["rows"] == 13  # the random-weight backbone is in its own table
    assert state["failed"] == 1
    assert state["tableWidth"] > 600
    assert state["bestBackground"] == "rgb(255, 243, 176)"  # the highlighted best row
    assert len(state["images"]) == 3 + 2 * 14
    for img in state["images"]:
        assert img["complete"] and img["w"] > 0 and img["h"] > 0, img
        assert img["shown"] > 100, img
    assert _problems(browser) == []

    # Full-page screenshot, kept with the test's files.
    shot = browser.call(
        "Page.captureScreenshot",
        format="png",
        captureBeyondViewport=True,
        clip={"x": 0, "y": 0, "width": 1300, "height": min(state["height"], 16000), "scale": 1},
    )
    png = base64.b64decode(shot["data"])
    (tmp_path / "report.png").write_bytes(png)
    im = Image.open(io.BytesIO(png))
    assert im.width == 1300 and im.height > 3000
    lo, hi = im.convert("L").getextrema()
    assert hi - lo > 100


def test_the_harness_detects_broken_pages(browser, tmp_path):
    """The checks above can fail: a broken image, a console error and a remote fetch."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><body><img id='x' src='data:image/png;base64,AAAA'>"
        "<img id='y' src='https://example.com/a.png'>"
        "<script>console.error('deliberate')</script></body></html>"
    )
    _load(browser, page)
    state = browser.evaluate(_STATE_JS)
    assert [i["w"] for i in state["images"]] == [0, 0]
    problems = _problems(browser)
    assert any("deliberate" in p for p in problems), problems
    assert any("example.com" in p for p in problems), problems
