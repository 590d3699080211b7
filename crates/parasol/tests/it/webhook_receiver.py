"""Webhook receiver of crates/parasol/tests/it/webhooks.rs.

Serves on 127.0.0.1 (the port is printed as `PORT <n>` on stdout). Each
path is an endpoint whose behaviour the test sets with
`POST /_control/<path>` `{"secrets": [...], "fail_first": n, "status": s,
"hang_seconds": t, "location": url, "body_bytes": n}`. Every delivery to an endpoint is verified with the
Standard Webhooks reference library (PyPI `standardwebhooks`) against each
configured secret, and recorded; `GET /_records` answers every record:
`{"path", "headers", "body", "verified": [bool per secret], "answered"}`.
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

LOCK = threading.Lock()
CONFIG = {}
RECORDS = []


def verified(secrets, body, headers):
    out = []
    for s in secrets:
        try:
            Webhook(s).verify(body, headers)
            out.append(True)
        except WebhookVerificationError:
            out.append(False)
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body=b"{}", location=None):
        self.send_response(status)
        if location:
            self.send_header("location", location)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n)

    def do_GET(self):
        if self.path == "/_records":
            with LOCK:
                body = json.dumps(RECORDS).encode()
            return self.answer(200, body)
        self.answer(404)

    def do_POST(self):
        raw = self.read_body()
        if self.path.startswith("/_control/"):
            path = "/" + self.path[len("/_control/"):]
            with LOCK:
                CONFIG[path] = dict(json.loads(raw), seen=0)
            return self.answer(200)
        headers = {k.lower(): v for k, v in self.headers.items()}
        with LOCK:
            cfg = CONFIG.setdefault(self.path, {"seen": 0})
            cfg["seen"] += 1
            seen = cfg["seen"]
            secrets = list(cfg.get("secrets", []))
        status = cfg.get("status", 200)
        if seen <= cfg.get("fail_first", 0):
            status = 500
        record = {
            "path": self.path,
            "headers": headers,
            "body": raw.decode(),
            "verified": verified(secrets, raw.decode(), headers),
            "answered": status,
            "at": time.time(),
        }
        with LOCK:
            RECORDS.append(record)
        hang = cfg.get("hang_seconds", 0)
        if hang:
            time.sleep(hang)
        try:
            self.answer(status, b"x" * cfg.get("body_bytes", 2), cfg.get("location"))
        except OSError:
            pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
