"""The SDK's retries against a real server: a connection dropped after the server acted
(a TCP proxy in between), a server that is not there, and a key over its rate limit."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from gengate.client import (
    APIConnectionError,
    APITimeoutError,
    AsyncClient,
    Client,
    RateLimitError,
)
from tests.e2e.server import ServerProcess, free_port, start_server


@pytest.fixture(scope="module")
def server(shared_server: ServerProcess) -> ServerProcess:
    """The session's default-config server: these tests only touch their own accounts."""
    return shared_server


def _read_message(sock: socket.socket) -> bytes:
    """One HTTP/1.1 message (head and a Content-Length body) from a socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside the body")
        body += chunk
    return head + b"\r\n\r\n" + body


def _header(message: bytes, name: str) -> str | None:
    head = message.partition(b"\r\n\r\n")[0].decode("latin-1")
    for line in head.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name:
            return value.strip()
    return None


class DroppingProxy:
    """A TCP proxy in front of the server. On its first `drops` connections it forwards
    the request, waits for the server's whole answer and then closes the client's side
    without passing the answer on (with a FIN, or a RST when `reset`): the server has
    acted, the client only sees the connection die. Later connections are piped through."""

    def __init__(self, target_port: int, *, drops: int = 1, reset: bool = False) -> None:
        self.target_port = target_port
        self.drops = drops
        self.reset = reset
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.dropped_requests: list[bytes] = []
        self.dropped_answers: list[bytes] = []
        self.piped = bytearray()
        self.connections = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                drop = self.connections <= self.drops
            threading.Thread(target=self._serve, args=(conn, drop), daemon=True).start()

    def _serve(self, conn: socket.socket, drop: bool) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        if not drop:
            threading.Thread(target=self._pipe, args=(upstream, conn, False), daemon=True).start()
            self._pipe(conn, upstream, True)
            return
        try:
            request = _read_message(conn)
            upstream.sendall(request)
            self.dropped_answers.append(_read_message(upstream))
            self.dropped_requests.append(request)
        finally:
            if self.reset:  # linger on with a zero timeout: close() sends a RST
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            upstream.close()

    def _pipe(self, source: socket.socket, sink: socket.socket, record: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if record:
                    self.piped.extend(chunk)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


@pytest.fixture
def proxy_factory(server: ServerProcess) -> Iterator[Any]:
    proxies: list[DroppingProxy] = []

    def make(**kwargs: Any) -> DroppingProxy:
        proxy = DroppingProxy(server.port, **kwargs)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


def _jobs_and_reservations(server: ServerProcess, api_key: str) -> tuple[list[str], int]:
    with server.client(api_key) as http:
        jobs = [job["id"] for job in http.get("/v1/jobs").json()["jobs"]]
        entries = http.get("/v1/account/ledger", params={"limit": 100}).json()["entries"]
    return jobs, sum(1 for entry in entries if entry["kind"] == "reserve")


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_a_submit_whose_answer_was_lost_is_retried_into_the_same_job(
    server: ServerProcess, proxy_factory: Any, reset: bool
) -> None:
    account = server.create_account()
    proxy = proxy_factory(reset=reset)
    with Client(account["api_key"], proxy.url) as client:
        job = client.run("echo", {"prompt": "exactly once"}, sync=False)

    # The server did create the job on the first try: its lost answer names it.
    (lost_answer,) = proxy.dropped_answers
    assert lost_answer.startswith(b"HTTP/1.1 202")
    lost_job = orjson.loads(lost_answer.partition(b"\r\n\r\n")[2])
    assert job.id == lost_job["id"]
    # The retry carried the same key, so the server replayed instead of creating.
    key = _header(proxy.dropped_requests[0], "idempotency-key")
    assert key is not None and key.startswith("gg-sdk-")
    assert f"idempotency-key: {key}".encode() in bytes(proxy.piped).lower()
    assert proxy.connections == 2
    jobs, reservations = _jobs_and_reservations(server, account["api_key"])
    assert jobs == [job.id] and reservations == 1


async def test_the_async_client_retries_a_lost_submit_the_same_way(
    server: ServerProcess, account: dict[str, str], proxy_factory: Any
) -> None:
    proxy = proxy_factory()
    async with AsyncClient(account["api_key"], proxy.url) as client:
        job = await client.generate.image(model="echo", prompt="async once")
    assert job.id == orjson.loads(proxy.dropped_answers[0].partition(b"\r\n\r\n")[2])["id"]
    jobs, reservations = _jobs_and_reservations(server, account["api_key"])
    assert jobs == [job.id] and reservations == 1


def test_reads_are_retried_and_a_lost_cancel_is_not_repeated(
    server: ServerProcess, proxy_factory: Any
) -> None:
    account = server.create_account()
    with Client(account["api_key"], server.url) as direct:
        slow = direct.run("echo", {"prompt": "slow", "latency_ms": 20000}, sync=False)

    proxy = proxy_factory()
    with Client(account["api_key"], proxy.url) as client:
        assert client.jobs.get(slow.id).id == slow.id
    assert proxy.connections == 2

    # A repeated cancel would answer 409 once the first went through, so the SDK reports
    # the lost answer instead of guessing; the cancel itself did happen.
    proxy = proxy_factory()
    with Client(account["api_key"], proxy.url) as client, pytest.raises(APIConnectionError):
        client.jobs.cancel(slow.id)
    assert proxy.connections == 1
    with Client(account["api_key"], server.url) as direct:
        assert direct.jobs.get(slow.id).status == "cancelled"


class CountingTransport(httpx.BaseTransport):
    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.attempts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_a_server_that_is_not_there_is_tried_a_bounded_number_of_times() -> None:
    transport = CountingTransport()
    nobody = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with (
        Client("gg_live_x", nobody, max_retries=2, transport=transport) as client,
        pytest.raises(APIConnectionError) as failed,
    ):
        client.jobs.get("job_" + "0" * 32)
    assert transport.attempts == 3
    # Backoff: 0.25 to 0.5 s, then 0.5 to 1 s.
    assert 0.7 <= time.monotonic() - started < 5.0
    assert not isinstance(failed.value, APITimeoutError)
    assert failed.value.url is not None and failed.value.url.startswith(nobody)

    transport = CountingTransport()
    with (
        Client("gg_live_x", nobody, max_retries=0, transport=transport) as client,
        pytest.raises(APIConnectionError),
    ):
        client.run("echo", {"prompt": "p"})
    assert transport.attempts == 1


# -- rate limits ---------------------------------------------------------------------------

RATE = 2  # requests a second: a bucket of 2 that refills one token every 0.5 s


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = start_server(
        tmp_path_factory.mktemp("limited"), settings={"rate_limit": f"{RATE}/second"}
    )
    try:
        yield process
    finally:
        process.stop()


class TimedTransport(httpx.BaseTransport):
    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.exchanges: list[tuple[httpx.Request, httpx.Response, float]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        self.exchanges.append((request, response, time.monotonic()))
        return response

    def close(self) -> None:
        self.inner.close()


def test_429_is_a_typed_error_when_retries_are_off(limited: ServerProcess) -> None:
    account = limited.create_account()
    with (
        Client(account["api_key"], limited.url, max_retries=0) as client,
        pytest.raises(RateLimitError) as limited_error,
    ):
        for _ in range(RATE + 1):
            list(client.jobs.list())
    error = limited_error.value
    assert error.status_code == 429 and error.code == "rate_limited"
    assert error.retry_after is not None and error.retry_after >= 1
    assert error.request_id is not None and error.request_id.startswith("req_")


def test_429_is_retried_after_retry_after_with_the_same_idempotency_key(
    limited: ServerProcess,
) -> None:
    account = limited.create_account()
    transport = TimedTransport()
    with Client(account["api_key"], limited.url, transport=transport) as client:
        jobs = [client.run("echo", {"prompt": f"p{n}"}, sync=False) for n in range(4)]

    assert len({job.id for job in jobs}) == 4
    answers = [response.status_code for _, response, _ in transport.exchanges]
    assert answers.count(202) == 4 and 429 in answers and set(answers) == {202, 429}
    for (request, response, at), (again, _, again_at) in zip(
        transport.exchanges, transport.exchanges[1:], strict=False
    ):
        if response.status_code == 429:
            # Retried no sooner than the server asked, with the same key.
            assert again_at - at >= float(response.headers["retry-after"]) - 0.05
            assert again.headers["idempotency-key"] == request.headers["idempotency-key"]
    with Client(account["api_key"], limited.url) as client:
        assert sorted(job.id for job in client.jobs.list()) == sorted(job.id for job in jobs)
