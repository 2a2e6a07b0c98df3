"""A real HTTP receiver for webhook tests, and tests of the receiver itself.

`Receiver` is an HTTP/1.1 server on 127.0.0.1 running in its own thread, so a receiver
that hangs never blocks the event loop of the gateway under test. It answers from a
script (one `Answer` per request, then the default), records every request and every
accepted connection, and can serve TLS with a given certificate.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

HANG_LIMIT_S = 60.0


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    #: Hold the request this long (until the receiver closes) before answering.
    hang_s: float = 0.0


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, receiver: Receiver, port: int) -> None:
        self.receiver = receiver
        super().__init__(("127.0.0.1", port), _Handler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        with self.receiver.lock:
            self.receiver.connections += 1
        return True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:
        receiver = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        headers = {key.lower(): value for key, value in self.headers.items()}
        with receiver.lock:
            receiver.requests.append(Received(self.path, headers, body, time.monotonic()))
            answer = receiver.script.pop(0) if receiver.script else receiver.default
        if answer.hang_s:
            receiver.release.wait(answer.hang_s)
            if receiver.closed:
                self.close_connection = True  # drop the connection without an answer
                return
        self.send_response(answer.status)
        for key, value in answer.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, format: str, *args: Any) -> None:
        return


class Receiver:
    """A scripted webhook receiver on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        answers: Iterable[Answer] = (),
        *,
        default: Answer | None = None,
        port: int | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.script = list(answers)
        self.default = default or Answer()
        self.requests: list[Received] = []
        self.connections = 0
        self.server_names: list[str | None] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.closed = False
        self.port = port or free_port()
        self.scheme = "https" if tls else "http"
        self._server = _Server(self, self.port)
        if tls is not None:
            tls.sni_callback = self._record_sni
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _record_sni(self, _sock: Any, server_name: str | None, _ctx: Any) -> None:
        with self.lock:
            self.server_names.append(server_name)

    def url(self, host: str = "127.0.0.1", path: str = "/hook") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def received(self) -> list[Received]:
        with self.lock:
            return list(self.requests)

    async def wait_for(self, count: int, *, timeout_s: float) -> list[Received]:
        """The first `count` requests, once they arrived; fails after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while len(self.received()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(self.received())} of {count} webhook requests after {timeout_s} s"
                )
            await asyncio.sleep(0.02)
        return self.received()[:count]

    def wait_for_sync(self, count: int, *, timeout_s: float) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        while len(self.received()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(self.received())} of {count} webhook requests after {timeout_s} s"
                )
            time.sleep(0.02)
        return self.received()[:count]

    def close(self) -> None:
        self.closed = True
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def test_the_receiver_answers_from_its_script_then_with_its_default() -> None:
    answers = [Answer(500, body=b"boom"), Answer(302, {"Location": "/elsewhere"})]
    with Receiver(answers, default=Answer(204, body=b"")) as receiver:
        with httpx.Client(follow_redirects=False) as client:
            statuses = [client.post(receiver.url(), content=b"x").status_code for _ in range(4)]
        assert statuses == [500, 302, 204, 204]
        assert [r.body for r in receiver.received()] == [b"x"] * 4
        assert receiver.connections >= 1


def test_a_hanging_answer_is_released_when_the_receiver_closes() -> None:
    receiver = Receiver([Answer(hang_s=HANG_LIMIT_S)])
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            httpx.post(receiver.url(), content=b"x", timeout=30)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    receiver.wait_for_sync(1, timeout_s=10)
    started = time.monotonic()
    receiver.close()
    caller.join(10)
    assert not caller.is_alive()
    assert time.monotonic() - started < 5
    assert outcome and isinstance(outcome[0], httpx.HTTPError)
