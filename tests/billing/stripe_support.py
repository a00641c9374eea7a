"""Test support for Stripe: events signed exactly as Stripe signs them, and a running localstripe.

Stripe's signature header is ``t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`` keyed
with the endpoint's webhook secret (https://docs.stripe.com/webhooks#verify-manually).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.log_hygiene import subprocess_log

WEBHOOK_SECRET = "whsec_test_routerhub_0123456789abcdef"
SECRET_KEY = "sk_test_routerhub_0123456789abcdef"


def stripe_signature(payload: bytes, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    timestamp = int(time.time()) if at is None else at
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def event_payload(event_type: str, obj: dict[str, Any], event_id: str | None = None) -> bytes:
    """A Stripe event body as Stripe serialises it (the object under ``data.object``)."""
    event = {
        "id": event_id or f"evt_{secrets.token_hex(12)}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "type": event_type,
        "data": {"object": obj},
    }
    return json.dumps(event, indent=2).encode()


def webhook_post(client: Any, payload: bytes, signature: str | None) -> Any:
    """POST a raw body to our webhook, as Stripe does (no CSRF token, no session)."""
    headers = {} if signature is None else {"HTTP_STRIPE_SIGNATURE": signature}
    return client.post(
        "/billing/stripe/webhook", data=payload, content_type="application/json", **headers
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Delivery:
    body: bytes
    signature: str

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class WebhookInbox:
    """A tiny HTTP endpoint that records what localstripe delivers, signature and all."""

    deliveries: list[Delivery] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def serve(self) -> tuple[ThreadingHTTPServer, str]:
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with inbox.arrived:
                    inbox.deliveries.append(Delivery(body, self.headers["Stripe-Signature"]))
                    inbox.arrived.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, f"http://127.0.0.1:{server.server_address[1]}/stripe"

    def wait_for(self, event_type: str, object_id: str, timeout: float = 15.0) -> Delivery:
        """The delivery of ``event_type`` about ``object_id``; waits up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                for delivery in self.deliveries:
                    event = delivery.event
                    if event["type"] == event_type and event["data"]["object"]["id"] == object_id:
                        return delivery
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [d.event["type"] for d in self.deliveries]
                    raise AssertionError(f"no {event_type} for {object_id} (got {seen})")
                self.arrived.wait(remaining)


class LocalStripe:
    """PyPI ``localstripe`` in a subprocess: a stateful fake of Stripe's API."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.log = subprocess_log("localstripe", workdir)
        self.inbox = WebhookInbox()
        self._inbox_server: ThreadingHTTPServer | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        """Start and wait until it answers; raises ``RuntimeError`` with its log otherwise."""
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "localstripe", "--port", str(self.port), "--from-scratch"],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"localstripe did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)  # polling a starting process, bounded by the deadline
        self._inbox_server, inbox_url = self.inbox.serve()
        # localstripe signs and POSTs every event to registered URLs, as Stripe does.
        self._request(
            "POST", "/_config/webhooks/routerhub", {"url": inbox_url, "secret": WEBHOOK_SECRET}
        )

    def _answers(self) -> bool:
        try:
            self._request("GET", "/v1/customers", None)
        except (urllib.error.URLError, ConnectionError, OSError):
            return False
        return True

    def _request(self, method: str, path: str, form: dict[str, str] | None) -> None:
        data = None if form is None else urllib.parse.urlencode(form).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {SECRET_KEY}"},
        )
        with urllib.request.urlopen(request, timeout=2) as response:
            response.read()

    def stop(self) -> None:
        if self._inbox_server is not None:
            self._inbox_server.shutdown()
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
