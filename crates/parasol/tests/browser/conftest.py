"""Browser tests of the web console: the real `parasol` binary, driven by
Playwright through Debian's chromium (never a downloaded browser).

The server is the built `target/debug/parasol` (scripts/test.sh builds it
first), started on port 0 with a fresh data directory; it lets webhooks
reach plain-http receivers on loopback, so the tests can run one.
Screenshots of the main pages go to target/browser-screenshots/.
"""

import os
import pathlib
import subprocess
import tempfile
import threading
import json
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import sync_playwright

ROOT = pathlib.Path(__file__).resolve().parents[4]
BINARY = pathlib.Path(os.environ.get("PARASOL_BIN", ROOT / "target" / "debug" / "parasol"))
CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "target" / "browser-screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def api(server, method, path, body=None):
    """Calls the JSON API as the admin (for set-up the user path does not cover)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(server.url + path, data=data, method=method,
                                 headers={"X-API-KEY": server.key, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as res:
        return json.loads(res.read())


def wait_active(server, instance_id):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if api(server, "GET", f"/v1/instances/{instance_id}/info")["status"] == "active":
            return
        time.sleep(0.1)
    raise AssertionError(f"instance {instance_id} never became active")


class Server:
    """A running parasol server and what it printed."""

    def __init__(self, proc, url, data_dir, lines):
        self.proc = proc
        self.url = url
        self.data_dir = data_dir
        self.lines = lines
        # A first start prints the admin key it made on the line after
        # "Created the admin account", as a newcomer sees it.
        created = [i for i, l in enumerate(lines) if l.startswith("Created the admin account")]
        assert created, lines
        self.key = lines[created[0] + 1].strip()


def start_server(extra_args=()):
    """Starts parasol on a fresh data directory; yields it, then stops it."""
    if not BINARY.exists():
        pytest.fail(f"{BINARY} is missing: build it with `cargo build -p parasol` first")
    data = tempfile.TemporaryDirectory()
    env = dict(os.environ, PARASOL_LOG="warn")
    env.pop("PARASOL_API_KEY", None)
    env.pop("PARASOL_CONFIG", None)
    env.pop("PARASOL_DATABASE_URL", None)
    log = open(pathlib.Path(data.name) / "server.log", "w")
    proc = subprocess.Popen(
        [str(BINARY), "serve", "--listen", "127.0.0.1:0", "--data-dir", data.name,
         "--sim-boot-seconds", "1", "--reconcile-period-ms", "100", "--sim-capacity", "100",
         "--test-clock", "--webhook-allow-http", "--webhook-allow-private", *extra_args],
        stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True, env=env,
    )
    lines = []
    found = threading.Event()
    url = []

    def read():
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("parasol listening on "):
                url.append(line.split(" on ", 1)[1].strip())
                found.set()

    threading.Thread(target=read, daemon=True).start()
    if not found.wait(30):
        proc.kill()
        pytest.fail("parasol did not start: " + (pathlib.Path(data.name) / "server.log").read_text())
    yield Server(proc, url[0], data.name, lines)
    proc.terminate()
    proc.wait(10)
    log.close()
    data.cleanup()


@pytest.fixture(scope="session")
def server():
    yield from start_server()


@pytest.fixture(scope="session")
def browser():
    if not pathlib.Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/setup.sh installs Debian's chromium package")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_page(browser, url):
    """A fresh browser context on `url`; fails the test on any CSP refusal."""
    ctx = browser.new_context(
        base_url=url,
        viewport={"width": 1360, "height": 860},
        permissions=["clipboard-read", "clipboard-write"],
    )
    pg = ctx.new_page()
    pg.set_default_timeout(20000)
    # Anything the Content-Security-Policy blocked is a page that relies on
    # inline script or style: it fails the test that loaded it.
    refused = []
    pg.on("console", lambda m: refused.append(m.text)
          if "Content Security Policy" in m.text else None)
    yield pg
    ctx.close()
    assert not refused, refused


@pytest.fixture()
def page(browser, server):
    yield from open_page(browser, server.url)


def sign_in(page, server):
    page.goto("/login")
    page.fill("#api_key", server.key)
    page.click("button[type=submit]")
    page.wait_for_url("**/instances")
    return page


@pytest.fixture()
def signed_in(page, server):
    return sign_in(page, server)


class Receiver:
    """A webhook receiver on loopback that answers 204 and keeps what it got."""

    def __init__(self):
        got = self.got = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("content-length") or 0)
                got.append(json.loads(self.rfile.read(n)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_port}/hook"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


@pytest.fixture()
def receiver():
    r = Receiver()
    yield r
    r.http.shutdown()


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)
