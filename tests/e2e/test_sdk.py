"""The Python SDK against a real `gengate serve` process: every method of `Client` and
`AsyncClient`, pagination across pages, waiting with ETags and `Retry-After`, typed
errors, downloads decoded as images."""

from __future__ import annotations

import dataclasses
import io
import itertools
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import av
import httpx
import pytest
from PIL import Image

from gengate.client import (
    APIStatusError,
    AsyncClient,
    AsyncJob,
    AuthenticationError,
    BadRequestError,
    Client,
    ConflictError,
    ContentRejectedError,
    GengateError,
    InsufficientCreditsError,
    InvalidInputError,
    Job,
    JobResult,
    MissingAPIKeyError,
    NoOutputError,
    NotFoundError,
    WaitTimeoutError,
)
from tests.e2e.server import ServerProcess


@pytest.fixture(scope="module")
def server(shared_server: ServerProcess) -> ServerProcess:
    """The session's default-config server: these tests only touch their own accounts."""
    return shared_server


class RecordingTransport(httpx.BaseTransport):
    """The real HTTP transport, keeping every request and answer for the test to read."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.exchanges: list[tuple[httpx.Request, httpx.Response, float]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        self.exchanges.append((request, response, time.monotonic()))
        return response

    def close(self) -> None:
        self.inner.close()

    def requests_to(self, path_part: str, method: str = "GET") -> list[httpx.Request]:
        return [r for r, _, _ in self.exchanges if path_part in r.url.path and r.method == method]


class AsyncRecordingTransport(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
def transport() -> RecordingTransport:
    return RecordingTransport()


@pytest.fixture
def client(
    server: ServerProcess, account: dict[str, str], transport: RecordingTransport
) -> Iterator[Client]:
    with Client(account["api_key"], server.url, transport=transport) as sdk:
        yield sdk


def _png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# -- run, generate, get -----------------------------------------------------------------------


def test_run_waits_for_the_job_and_returns_it_with_typed_fields(
    client: Client, transport: RecordingTransport
) -> None:
    job = client.run("echo", {"prompt": "hello", "seed": 7}, tags={"suite": "sdk"}, priority=2)

    assert isinstance(job, Job)
    assert job.status == "succeeded" and job.is_terminal
    assert job.id.startswith("job_") and job.model == "echo" and job.modality == "image"
    assert job.input["prompt"] == "hello" and job.input["seed"] == 7
    assert job.cost.credits == 0.1 and job.cost.cost_micro == 1000
    assert job.error is None and job.progress == 100
    assert [(t.key, t.value) for t in job.tags] == [("suite", "sdk")]
    assert job.priority == 2
    assert isinstance(job.created_at, datetime) and job.created_at.tzinfo is not None
    assert job.result is not None and job.url == job.result.url == job.result.outputs[0].url
    assert job.asset_ids == (job.result.outputs[0].asset_id,)
    assert job.to_dict()["id"] == job.id and job.to_dict()["status"] == "succeeded"

    (submit,) = transport.requests_to("/v1/models/echo/run", "POST")
    assert submit.headers["authorization"].startswith("Bearer gg_live_")
    assert submit.headers["idempotency-key"].startswith("gg-sdk-")
    # The default read timeout is 60 s, so the server is asked to answer within 55 s.
    assert submit.headers["prefer"] == "wait=55"
    image = _png(httpx.get(job.url or "").content)
    assert image.format == "PNG" and image.size == (64, 64)


def test_run_without_sync_answers_at_once_and_get_reads_the_job(client: Client) -> None:
    job = client.run("echo", {"prompt": "later", "latency_ms": 300}, sync=False)
    assert job.status in ("queued", "running")
    assert job.url is None and job.result is None

    same = client.jobs.get(job.id)
    assert same.id == job.id and isinstance(same, Job)
    bare_uuid = job.id.removeprefix("job_")
    assert client.jobs.get(bare_uuid).id == job.id
    assert same.wait(timeout=20).status == "succeeded"


def test_generate_image_submits_to_the_modality_endpoint(
    client: Client, transport: RecordingTransport, tmp_path: Path
) -> None:
    job = client.generate.image(
        prompt="a lighthouse", width=64, height=96, seed=3, metadata={"order": 12}
    )
    assert job.status in ("queued", "running", "succeeded")
    assert job.model == "local-image"
    assert job.input["width"] == 64 and job.metadata == {"order": 12}

    done = job.wait(timeout=60)
    assert done.status == "succeeded", done.error
    written = done.download(tmp_path / "lighthouse.png")
    assert written == tmp_path / "lighthouse.png"
    assert _png(written.read_bytes()).size == (64, 96)
    (call,) = transport.requests_to("/v1/images/generations", "POST")
    assert call.headers["idempotency-key"].startswith("gg-sdk-")


def test_generate_video_and_download_a_decodable_mp4(client: Client, tmp_path: Path) -> None:
    job = client.generate.video(prompt="a drifting boat", duration=1, width=160, height=96, fps=12)
    assert job.model == "local-video" and job.modality == "video"
    done = job.wait(timeout=120)
    assert done.status == "succeeded", done.error
    path = done.download(tmp_path)
    assert path == tmp_path / f"{job.id}-0.mp4"
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 12 and (frames[0].width, frames[0].height) == (160, 96)


def test_each_generate_method_reaches_its_own_endpoint(
    client: Client, transport: RecordingTransport
) -> None:
    """`echo` is an image model, so every other modality endpoint refuses it with 422:
    the refusal proves each method reached the endpoint of its own modality."""
    methods = {
        client.generate.video: ("/v1/videos/generations", "video"),
        client.generate.music: ("/v1/audio/music", "music"),
        client.generate.speech: ("/v1/audio/speech", "voice"),
        client.generate.model3d: ("/v1/3d/generations", "3d"),
        client.generate.story: ("/v1/stories", "story"),
    }
    for method, (path, modality) in methods.items():
        with pytest.raises(InvalidInputError) as refused:
            method(model="echo", prompt="x")
        assert modality in refused.value.message, refused.value
        assert refused.value.status_code == 422
        assert len(transport.requests_to(path, "POST")) == 1
    job = client.generate.image(model="echo", prompt="x", tags={"via": "generate"})
    assert job.modality == "image" and [(t.key, t.value) for t in job.tags] == [("via", "generate")]


def test_wait_on_a_five_second_job_uses_etags_and_the_servers_poll_hint(
    client: Client, transport: RecordingTransport
) -> None:
    started = time.monotonic()
    # No progress steps: the record does not change while the job runs, so polls get 304.
    job = client.run("echo", {"prompt": "five", "latency_ms": 5000}, sync=False)
    done = job.wait(timeout=30)
    elapsed = time.monotonic() - started

    assert done.status == "succeeded" and done.progress == 100
    assert 5.0 <= elapsed < 9.0, elapsed
    polls = [
        (request, response, at)
        for request, response, at in transport.exchanges
        if request.method == "GET" and request.url.path == f"/v1/jobs/{job.id}"
    ]
    # An image job's hint is 1 s running (2 s queued): a handful of polls, not hundreds.
    assert 3 <= len(polls) <= 9, len(polls)
    assert "if-none-match" not in polls[0][0].headers
    for (_, before, before_at), (request, _, at) in itertools.pairwise(polls):
        assert request.headers["if-none-match"] == before.headers["etag"]
        hint = float(before.headers["retry-after"])
        assert at - before_at >= hint - 0.05, (hint, at - before_at)
    statuses = [response.status_code for _, response, _ in polls]
    assert statuses[-1] == 200 and set(statuses) == {200, 304}, statuses


def test_wait_raises_a_typed_timeout_with_the_last_record(client: Client) -> None:
    job = client.run("echo", {"prompt": "slow", "latency_ms": 20000}, sync=False)
    started = time.monotonic()
    with pytest.raises(WaitTimeoutError) as timed_out:
        job.wait(timeout=1.0)
    assert 1.0 <= time.monotonic() - started < 3.0
    assert isinstance(timed_out.value, TimeoutError) and isinstance(timed_out.value, GengateError)
    assert timed_out.value.job.id == job.id
    assert timed_out.value.job.status in ("queued", "running")

    cancelled = job.cancel()
    assert cancelled.status == "cancelled" and cancelled.cost.credits == 0
    with pytest.raises(ConflictError) as again:
        client.jobs.cancel(job.id)
    assert again.value.details["status"] == "cancelled"
    assert client.jobs.get(job.id).wait(timeout=1).status == "cancelled"


# -- listing ------------------------------------------------------------------------------------


def test_list_iterates_250_jobs_across_pages_lazily(
    server: ServerProcess, account: dict[str, str], transport: RecordingTransport
) -> None:
    batch = uuid.uuid4().hex
    with Client(account["api_key"], server.url) as submitter:

        def submit(n: int) -> str:
            job = submitter.run("echo", {"prompt": f"n{n}"}, sync=False, tags={"batch": batch})
            return job.id

        with ThreadPoolExecutor(max_workers=4) as pool:
            created = set(pool.map(submit, range(250)))
    assert len(created) == 250

    with Client(account["api_key"], server.url, transport=transport) as client:
        pages = client.jobs.list(tags={"batch": batch})
        assert transport.exchanges == []  # nothing is fetched before the iteration starts
        first = list(itertools.islice(pages, 5))
        assert len(first) == 5 and len(transport.exchanges) == 1

        listed = [job.id for job in client.jobs.list(tags={"batch": batch}, limit=100)]
        assert len(transport.requests_to("/v1/jobs")) == 1 + 3  # 100 + 100 + 50
        assert len(listed) == 250 and set(listed) == created
        assert listed == sorted(listed, reverse=True)  # newest first, no repeats

        default_pages = sum(1 for _ in client.jobs.list(tags={"batch": batch}))
        assert default_pages == 250
        assert len(transport.requests_to("/v1/jobs")) == 4 + 13  # 20 a page by default

        full_pages = transport.requests_to("/v1/jobs")[1:4]
        cursors = [request.url.params.get("cursor") for request in full_pages]
        assert cursors[0] is None and all(cursors[1:])
        for request in transport.requests_to("/v1/jobs"):
            assert request.url.params.get_list("tag") == [f"batch:{batch}"]


def test_list_filters_by_status_model_and_time(client: Client) -> None:
    failed = client.run("echo", {"prompt": "bad", "fail": True})
    ok = client.run("echo", {"prompt": "good"})
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.code == "provider_error"

    assert [j.id for j in client.jobs.list(status="failed")] == [failed.id]
    assert [j.id for j in client.jobs.list(status="succeeded", model="echo")] == [ok.id]
    assert list(client.jobs.list(model="local-image")) == []
    assert ok.created_at is not None
    after = [j.id for j in client.jobs.list(created_after=ok.created_at, modality="image")]
    assert failed.id not in after
    before = [j.id for j in client.jobs.list(created_before=ok.created_at.isoformat())]
    assert before == [failed.id]


# -- errors ----------------------------------------------------------------------------------


def _assert_api_error(error: APIStatusError, status: int, code: str) -> None:
    assert error.status_code == status and error.code == code
    assert error.request_id is not None and error.request_id.startswith("req_")
    assert error.response.headers["x-request-id"] == error.request_id
    assert error.message and str(error).startswith(f"{status} {code}: ")
    assert error.to_dict()["error"] == code


def test_typed_errors_for_each_refusal(
    server: ServerProcess, client: Client, account: dict[str, str]
) -> None:
    with (
        Client("gg_live_" + "x" * 43, server.url) as stranger,
        pytest.raises(AuthenticationError) as unauthorized,
    ):
        stranger.jobs.get("job_" + "0" * 32)
    _assert_api_error(unauthorized.value, 401, "unauthorized")

    broke = server.create_account(credits=0)
    with (
        Client(broke["api_key"], server.url) as poor,
        pytest.raises(InsufficientCreditsError) as no_money,
    ):
        poor.run("echo", {"prompt": "p"})
    _assert_api_error(no_money.value, 402, "insufficient_credits")
    assert no_money.value.details["required_micro"] == 1000

    with pytest.raises(NotFoundError) as missing:
        client.jobs.get("job_" + "0" * 32)
    _assert_api_error(missing.value, 404, "not_found")
    with pytest.raises(NotFoundError):
        client.run("no-such-model", {"prompt": "p"})

    client.run("echo", {"prompt": "one"}, sync=False, idempotency_key="order-1")
    with pytest.raises(ConflictError) as reused:
        client.run("echo", {"prompt": "two"}, sync=False, idempotency_key="order-1")
    _assert_api_error(reused.value, 409, "conflict")

    with pytest.raises(InvalidInputError) as invalid:
        client.run("echo", {"prompt": "p", "colour": "red"})
    _assert_api_error(invalid.value, 422, "invalid_input")
    assert invalid.value.details["errors"]

    with pytest.raises(ContentRejectedError) as rejected:
        client.generate.image(model="echo", prompt="something forbidden")
    _assert_api_error(rejected.value, 451, "content_rejected")

    with pytest.raises(BadRequestError) as bad:
        next(iter(client.jobs.list(limit=0)))
    _assert_api_error(bad.value, 400, "invalid_request")

    for error in (unauthorized, no_money, missing, reused, invalid, rejected, bad):
        assert isinstance(error.value, APIStatusError) and isinstance(error.value, GengateError)


def test_the_same_idempotency_key_and_body_replays_the_job(client: Client) -> None:
    first = client.run("echo", {"prompt": "once"}, idempotency_key="replay-me")
    again = client.run("echo", {"prompt": "once"}, idempotency_key="replay-me")
    assert again.id == first.id
    assert sum(1 for _ in client.jobs.list()) == 1


# -- downloads ---------------------------------------------------------------------------------


def test_download_into_a_directory_and_renew_a_dead_link(client: Client, tmp_path: Path) -> None:
    job = client.run("local-image", {"prompt": "two", "width": 64, "height": 64, "num_images": 2})
    assert job.status == "succeeded" and job.result is not None

    first = job.download(tmp_path)
    second = job.download(tmp_path, index=1)
    assert first == tmp_path / f"{job.id}-0.png" and second == tmp_path / f"{job.id}-1.png"
    assert _png(first.read_bytes()).size == (64, 64)
    assert first.read_bytes() != second.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name, second.name]

    # A link whose signature no longer matches (as after its expiry) answers 403; the SDK
    # fetches the job again for a fresh link.
    output = job.result.outputs[0]
    dead = (output.url or "").replace("sig=", "sig=AAAA")
    stale = dataclasses.replace(
        job,
        result=JobResult(url=dead, outputs=(dataclasses.replace(output, url=dead),)),
    )
    renewed = stale.download(tmp_path / "renewed.png")
    assert renewed.read_bytes() == first.read_bytes()

    with pytest.raises(NoOutputError):
        job.download(tmp_path, index=2)
    failed = client.run("echo", {"prompt": "no file", "fail": True})
    with pytest.raises(NoOutputError):
        failed.download(tmp_path / "nothing.png")
    assert not (tmp_path / "nothing.png").exists()


# -- configuration ------------------------------------------------------------------------------


def test_key_and_url_come_from_the_environment(
    server: ServerProcess, account: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENGATE_API_KEY", account["api_key"])
    monkeypatch.setenv("GENGATE_BASE_URL", server.url + "/")
    with Client() as client:
        assert client.base_url == server.url
        assert client.run("echo", {"prompt": "env"}).status == "succeeded"

    monkeypatch.delenv("GENGATE_API_KEY")
    with pytest.raises(MissingAPIKeyError):
        Client()
    with pytest.raises(MissingAPIKeyError):
        AsyncClient(base_url=server.url)


def test_a_given_http_client_is_used_and_left_open(
    server: ServerProcess, account: dict[str, str]
) -> None:
    recording = RecordingTransport()
    http = httpx.Client(transport=recording)
    with Client(account["api_key"], server.url, http_client=http) as client:
        client.run("echo", {"prompt": "mine"})
    assert len(recording.exchanges) == 1
    assert not http.is_closed
    http.close()
    with pytest.raises(ValueError):
        Client(account["api_key"], server.url, http_client=http, transport=recording)


# -- the async twin ----------------------------------------------------------------------------


async def test_async_client_does_what_the_sync_client_does(
    server: ServerProcess, account: dict[str, str], tmp_path: Path
) -> None:
    transport = AsyncRecordingTransport()
    async with AsyncClient(account["api_key"], server.url, transport=transport) as client:
        job = await client.run("echo", {"prompt": "async"}, tags={"side": "async"})
        assert isinstance(job, AsyncJob) and job.status == "succeeded"
        assert (await client.jobs.get(job.id)).id == job.id

        image = await client.generate.image(model="echo", prompt="generated")
        done = await image.wait(timeout=20)
        assert done.status == "succeeded"
        path = await done.download(tmp_path)
        assert _png(path.read_bytes()).size == (64, 64)

        slow = await client.run("echo", {"prompt": "slow", "latency_ms": 20000}, sync=False)
        with pytest.raises(WaitTimeoutError):
            await slow.wait(timeout=0.5)
        assert (await slow.cancel()).status == "cancelled"
        with pytest.raises(ConflictError):
            await client.jobs.cancel(slow.id)

        listed = [j.id async for j in client.jobs.list(limit=1)]
        assert listed == [slow.id, image.id, job.id]
        tagged = [j.id async for j in client.jobs.list(tags={"side": "async"})]
        assert tagged == [job.id]
        with pytest.raises(InvalidInputError):
            await client.generate.music(model="echo", prompt="x")

    for request in transport.requests:
        keyed = "authorization" in request.headers
        assert keyed != request.url.path.startswith("/v1/files/"), request.url
    submits = [r for r in transport.requests if r.method == "POST" and "/cancel" not in r.url.path]
    assert len({r.headers["idempotency-key"] for r in submits}) == len(submits) == 4


def test_file_links_are_fetched_without_the_api_key(
    client: Client, transport: RecordingTransport, tmp_path: Path
) -> None:
    job = client.run("echo", {"prompt": "keyless"})
    job.download(tmp_path / "out.png")
    (fetch,) = transport.requests_to("/v1/files/")
    assert "authorization" not in fetch.headers
