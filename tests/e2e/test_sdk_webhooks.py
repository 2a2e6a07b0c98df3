"""`from gengate.webhooks import verify`, as an SDK user's webhook receiver calls it, on
real deliveries: a job submitted with the SDK, delivered by a real server to a real
HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gengate.client import Client
from gengate.webhooks import WebhookVerificationError, verify
from tests.e2e.server import ServerProcess, start_server

Delivery = tuple[bytes, dict[str, str]]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = start_server(
        tmp_path_factory.mktemp("webhooks"), settings={"webhooks_allow_private": True}
    )
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def receiver() -> Iterator[tuple[str, queue.Queue[Delivery]]]:
    """An HTTP endpoint that keeps each request's raw body and headers."""
    received: queue.Queue[Delivery] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            received.put((body, {k.lower(): v for k, v in self.headers.items()}))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return None

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{http.server_address[1]}/hooks", received
    finally:
        http.shutdown()
        http.server_close()
        thread.join(5)


def test_a_real_delivery_verifies_with_the_accounts_secret(
    server: ServerProcess, receiver: tuple[str, queue.Queue[Delivery]]
) -> None:
    url, received = receiver
    account = server.create_account()
    with Client(account["api_key"], server.url) as client:
        job = client.run("echo", {"prompt": "call me"}, webhook_url=url)
        assert job.status == "succeeded"
        assert job.webhook is not None and job.webhook.url == url

        body, headers = received.get(timeout=30)
        payload = verify(body, headers, account["webhook_secret"])
        assert payload["type"] == "job.succeeded"
        assert payload["data"]["id"] == job.id and payload["data"]["status"] == "succeeded"
        assert headers["webhook-signature"].startswith("v1,")

        with pytest.raises(WebhookVerificationError):
            verify(body.replace(b"succeeded", b"failed", 1), headers, account["webhook_secret"])
        other = server.create_account()
        with pytest.raises(WebhookVerificationError):
            verify(body, headers, other["webhook_secret"])
        with pytest.raises(WebhookVerificationError):
            verify(
                body,
                {k: v for k, v in headers.items() if k != "webhook-id"},
                account["webhook_secret"],
            )

        deadline = time.monotonic() + 30
        while (webhook := client.jobs.get(job.id).webhook) and webhook.status != "delivered":
            assert time.monotonic() < deadline, webhook
            time.sleep(0.05)
        assert webhook is not None and webhook.attempts == 1
