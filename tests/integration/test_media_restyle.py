"""`local-image` with `image_url`: the input picture restyled by the prompt and seed, read
from an upload (storage, no HTTP) or fetched over HTTP from a real server on 127.0.0.1
under the address guard, on SQLite and PostgreSQL. Refusals at submit (422) and at
fetch time (the job fails with `invalid_input`, uncharged): private addresses, a name
re-pointed at a private address after submit, oversize files, files of another type,
missing files; transient failures are retried."""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from gengate.domain.errors import InvalidInput
from gengate.outbound.media import sniff_media_type
from gengate.providers.art import render
from gengate.providers.base import InvalidInputError
from gengate.providers.restyle import prepare_input, restyle
from gengate.services import uploads as upload_service
from gengate.services.gateway import Gateway
from gengate.store.jobs import JobRow
from tests.conftest import Caller, new_caller
from tests.integration.media_checks import TERMINAL
from tests.integration.support import open_gateway
from tests.integration.test_assets import links_of
from tests.integration.test_providers import (
    assert_uncharged,
    money,
    read_job,
    running_worker,
    submit,
    wait_for_job,
)

WIDTH, HEIGHT = 120, 80
PROMPT = "a calm blue ocean at night"
PUBLIC_ADDRESS = "93.184.216.34"  # only ever resolved to, never connected to
MEDIA_LIMIT = 60_000
NOT_AN_IMAGE = "image_url: the file is not of an accepted type (image/jpeg, image/png, image/webp)."


def picture(kind: str, size: tuple[int, int] = (240, 160), fmt: str = "PNG") -> bytes:
    """A small test picture with shapes and gradients (`kind` picks which)."""
    image = Image.new("RGB", size, (30, 60, 90))
    draw = ImageDraw.Draw(image)
    w, h = size
    if kind == "circle":
        draw.ellipse((w * 0.25, h * 0.2, w * 0.75, h * 0.8), fill=(240, 230, 200))
    else:
        draw.rectangle((w * 0.1, h * 0.5, w * 0.9, h * 0.9), fill=(200, 40, 40))
        draw.line((0, 0, w, h), fill=(255, 255, 255), width=6)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def noise_png(size: int) -> bytes:
    """An incompressible PNG of about `size` * `size` * 3 bytes."""
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


# -- a real HTTP server on 127.0.0.1 that serves media ----------------------------------


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    send_length: bool = True
    # Answer `fail_status` (with no body) this many times first: a flaky origin.
    fail_first: int = 0
    fail_status: int = 503


class MediaServer:
    """Serves fixed answers by path, over real sockets, and records every request."""

    def __init__(self, routes: Mapping[str, Route]) -> None:
        self.routes = dict(routes)
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # close-delimited bodies are allowed

            def do_GET(self) -> None:
                with server._lock:
                    server.requests.append((self.path, dict(self.headers.items())))
                    route = server.routes.get(self.path)
                    failing = route is not None and route.fail_first > 0
                    if route is not None and failing:
                        route.fail_first -= 1
                if route is None or failing:
                    self.send_response(404 if route is None else route.fail_status)
                    self.end_headers()
                    return
                self.send_response(route.status)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                if route.send_length:
                    self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def paths(self) -> list[str]:
        with self._lock:
            return [path for path, _ in self.requests]

    def __enter__(self) -> MediaServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def media_server(routes: Mapping[str, Route]) -> Iterator[MediaServer]:
    with MediaServer(routes) as server:
        yield server


class SwitchableResolver:
    """Answers from a table the test can change between submit and fetch."""

    def __init__(self, table: Mapping[str, Sequence[str]]) -> None:
        self.table = dict(table)

    async def __call__(self, host: str, port: int) -> list[str]:
        if host not in self.table:
            raise OSError(-2, "Name or service not known")
        return list(self.table[host])


# -- helpers ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def private_media_gateway(
    database_url: str, tmp_path: Path, **overrides: Any
) -> AsyncIterator[tuple[Gateway, Caller]]:
    """A gateway whose operator lets media URLs reach 127.0.0.1 (the test server), with
    a small media limit and quick retries."""
    values: dict[str, Any] = {
        "media_allow_private": True,
        "media_max_bytes": MEDIA_LIMIT,
        "media_fetch_timeout_s": 10.0,
        "models": {"local-image": {"retry_base_s": 0.05, "retry_cap_s": 0.1, "max_attempts": 2}},
    }
    values.update(overrides)
    async with open_gateway(database_url, tmp_path / "data", **values) as gw:
        yield gw, await new_caller(gw)


def restyle_input(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "prompt": PROMPT,
        "seed": 4,
        "width": WIDTH,
        "height": HEIGHT,
        "image_url": url,
        **extra,
    }


async def run_jobs(gw: Gateway, jobs: list[JobRow], *, timeout_s: float = 30) -> list[JobRow]:
    async with running_worker(gw, "local-image"):
        return [
            await wait_for_job(
                gw, job.id, lambda row: row.status in TERMINAL, timeout_s=timeout_s, what="the job"
            )
            for job in jobs
        ]


async def output_pixels(gw: Gateway, row: JobRow, index: int = 0) -> Any:
    output = row.result["outputs"][index]
    data = await gw.storage.read(output["storage_key"])
    assert data is not None and len(data) == output["bytes"]
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.size == (WIDTH, HEIGHT)
    assert (output["width"], output["height"]) == (WIDTH, HEIGHT)
    return np.asarray(image.convert("RGB"))


def expected(data: bytes, index: int = 0) -> Any:
    return restyle(prepare_input(data, WIDTH, HEIGHT), PROMPT, 4, index=index)


async def upload(gw: Gateway, caller: Caller, data: bytes) -> str:
    row = await upload_service.create_upload(gw, caller.principal, data, filename="in.png")
    return links_of(gw).url(row.storage_key)


# -- uploads and our own links ----------------------------------------------------------


async def test_an_upload_is_restyled(gateway: Gateway, caller: Caller) -> None:
    before = await money(gateway, caller)
    circle, bars = picture("circle"), picture("bars", fmt="JPEG")
    circle_url, bars_url = (
        await upload(gateway, caller, circle),
        await upload(gateway, caller, bars),
    )
    # The upload link names a host nobody resolves: it is read from storage.
    assert circle_url.startswith("http://gateway.test/v1/files/uploads/")
    jobs = [
        await submit(gateway, caller, "local-image", restyle_input(circle_url, num_images=2)),
        await submit(gateway, caller, "local-image", restyle_input(bars_url)),
        await submit(
            gateway,
            caller,
            "local-image",
            {"prompt": PROMPT, "seed": 4, "width": WIDTH, "height": HEIGHT},
        ),
    ]
    circles, barred, plain = await run_jobs(gateway, jobs)
    for row in (circles, barred, plain):
        assert row.status == "succeeded", row.error
    first, second = (
        await output_pixels(gateway, circles, 0),
        await output_pixels(gateway, circles, 1),
    )
    other_input = await output_pixels(gateway, barred)
    plain_pixels = await output_pixels(gateway, plain)
    # Exactly the restyle of the uploaded bytes, per image index.
    assert np.array_equal(first, expected(circle, 0))
    assert np.array_equal(second, expected(circle, 1))
    assert np.array_equal(other_input, expected(bars, 0))
    assert np.array_equal(plain_pixels, render(PROMPT, 4, WIDTH, HEIGHT))
    # It differs from a plain picture of the same prompt and seed, and follows the input:
    # where the input is bright (the circle), the restyle is brighter than around it.
    assert np.abs(first.astype(int) - plain_pixels.astype(int)).mean() > 10
    assert np.abs(first.astype(int) - other_input.astype(int)).mean() > 10
    luma = first.mean(axis=2)
    assert luma[HEIGHT // 2, WIDTH // 2] > luma[5, 5] + 20
    # 1 credit per image: 2 + 1 + 1.
    after = await money(gateway, caller)
    assert after.balance_micro == before.balance_micro - 4 * 10_000
    assert (await read_job(gateway, circles.id)).cost_micro == 20_000


async def test_a_job_output_link_can_be_restyled(gateway: Gateway, caller: Caller) -> None:
    plain = (
        await run_jobs(
            gateway,
            [await submit(gateway, caller, "local-image", {"prompt": "a red sunset", "width": 96})],
        )
    )[0]
    assert plain.status == "succeeded"
    url = links_of(gateway).url(plain.result["outputs"][0]["storage_key"])
    (done,) = await run_jobs(
        gateway, [await submit(gateway, caller, "local-image", restyle_input(url))]
    )
    assert done.status == "succeeded", done.error
    source = await gateway.storage.read(plain.result["outputs"][0]["storage_key"])
    assert source is not None
    assert np.array_equal(await output_pixels(gateway, done), expected(source))


async def test_refused_urls_are_refused_at_submit(gateway: Gateway, caller: Caller) -> None:
    before = await money(gateway, caller)
    stale = gateway.signer.url("http://gateway.test", "uploads/gone.png", 1_000_000_000)
    for url in (
        "http://127.0.0.1:9/in.png",
        "http://10.1.2.3/in.png",
        "http://[::1]/in.png",
        "http://169.254.169.254/latest/meta-data",
        "ftp://example.com/in.png",
        "file:///etc/passwd",
        "not a url",
        stale,  # one of our links, but expired
    ):
        with pytest.raises(InvalidInput) as refused:
            await submit(gateway, caller, "local-image", restyle_input(url))
        assert refused.value.details["field"] == "image_url", url
    assert await money(gateway, caller) == before


async def test_a_missing_upload_fails_the_job(gateway: Gateway, caller: Caller) -> None:
    before = await money(gateway, caller)
    row = await upload_service.create_upload(
        gateway, caller.principal, picture("circle"), filename=None
    )
    url = links_of(gateway).url(row.storage_key)
    job = await submit(gateway, caller, "local-image", restyle_input(url))
    await upload_service.delete_upload(gateway, caller.principal, f"upl_{row.id.hex}")
    (done,) = await run_jobs(gateway, [job])
    assert done.status == "failed"
    assert done.error == {
        "code": "invalid_input",
        "message": "The file behind the link no longer exists.",
    }
    await assert_uncharged(gateway, caller, await read_job(gateway, done.id), before)


# -- URLs fetched over HTTP -------------------------------------------------------------


async def test_a_url_is_fetched_from_a_local_server(database_url: str, tmp_path: Path) -> None:
    jpeg = picture("circle", fmt="JPEG")
    routes = {
        "/photo.jpg": Route(body=jpeg, headers={"Content-Type": "application/octet-stream"}),
        "/moved": Route(status=302, headers={"Location": "/photo.jpg"}),
        "/stream.jpg": Route(body=jpeg, send_length=False),
    }
    async with private_media_gateway(database_url, tmp_path) as (gw, caller):
        with media_server(routes) as server:
            jobs = [
                await submit(gw, caller, "local-image", restyle_input(server.url(path)))
                for path in ("/photo.jpg", "/moved", "/stream.jpg")
            ]
            done = await run_jobs(gw, jobs)
            for row in done:
                assert row.status == "succeeded", row.error
                # The type is sniffed from the bytes, whatever the server declared.
                assert np.array_equal(await output_pixels(gw, row), expected(jpeg))
            assert sorted(server.paths()) == sorted(
                ["/photo.jpg", "/moved", "/photo.jpg", "/stream.jpg"]
            )
            _, headers = server.requests[0]
            assert headers["Host"] == f"127.0.0.1:{server.port}"
            assert "image/png" in headers["Accept"]


async def test_bad_media_fails_the_job_with_invalid_input(
    database_url: str, tmp_path: Path
) -> None:
    big = noise_png(160)
    assert len(big) > MEDIA_LIMIT
    corrupt = picture("circle")[:200]  # a PNG signature, then the file ends
    routes = {
        "/big.png": Route(body=big),
        "/big-stream.png": Route(body=big, send_length=False),
        "/page.html": Route(body=b"<!doctype html><html><body>not a picture</body></html>"),
        "/track.wav": Route(body=b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(32)),
        "/corrupt.png": Route(body=corrupt),
        "/away": Route(status=302, headers={"Location": "http://nowhere.invalid/in.png"}),
    }
    expectations = {
        "/big.png": f"image_url: the file is larger than {MEDIA_LIMIT} bytes.",
        "/big-stream.png": f"image_url: the file is larger than {MEDIA_LIMIT} bytes.",
        "/page.html": NOT_AN_IMAGE,
        "/track.wav": NOT_AN_IMAGE,
        "/corrupt.png": "image_url: the picture cannot be decoded.",
        "/missing.png": "image_url: the server answered HTTP 404.",
        "/away": "image_url is not allowed: the host 'nowhere.invalid' cannot be resolved.",
    }
    async with private_media_gateway(database_url, tmp_path) as (gw, caller):
        gw.resolver = SwitchableResolver({})  # names resolve to nothing here
        before = await money(gw, caller)
        with media_server(routes) as server:
            jobs = {
                path: await submit(gw, caller, "local-image", restyle_input(server.url(path)))
                for path in expectations
            }
            done = dict(zip(jobs, await run_jobs(gw, list(jobs.values())), strict=True))
        for path, message in expectations.items():
            row = done[path]
            assert row.status == "failed", path
            assert row.error == {"code": "invalid_input", "message": message}, path
            assert row.attempts == 1, path  # not worth retrying
            assert row.cost_micro == 0
        assert await money(gw, caller) == before


async def test_transient_failures_are_retried(database_url: str, tmp_path: Path) -> None:
    routes = {
        "/flaky.png": Route(body=picture("circle"), fail_first=1),
        "/down.png": Route(status=503),
    }
    async with private_media_gateway(database_url, tmp_path) as (gw, caller):
        with media_server(routes) as server:
            flaky = await submit(gw, caller, "local-image", restyle_input(server.url("/flaky.png")))
            down = await submit(gw, caller, "local-image", restyle_input(server.url("/down.png")))
            flaky_done, down_done = await run_jobs(gw, [flaky, down])
    assert flaky_done.status == "succeeded", flaky_done.error
    assert flaky_done.attempts == 2
    assert down_done.status == "failed"
    assert down_done.attempts == 2  # max_attempts, then the input is at fault
    assert down_done.error == {
        "code": "invalid_input",
        "message": "image_url: the server answered HTTP 503.",
    }


async def test_a_name_repointed_after_submit_is_refused(gateway: Gateway, caller: Caller) -> None:
    """DNS rebinding: the name was public at submit, private when the worker fetches."""
    resolver = SwitchableResolver({"media.example": [PUBLIC_ADDRESS]})
    gateway.resolver = resolver
    before = await money(gateway, caller)
    job = await submit(gateway, caller, "local-image", restyle_input("http://media.example/in.png"))
    resolver.table["media.example"] = ["127.0.0.1"]
    (done,) = await run_jobs(gateway, [job])
    assert done.status == "failed"
    assert done.error == {
        "code": "invalid_input",
        "message": (
            "image_url is not allowed: media.example resolves to 127.0.0.1, which is not public."
        ),
    }
    await assert_uncharged(gateway, caller, await read_job(gateway, done.id), before)


# -- the pieces -------------------------------------------------------------------------


def test_media_types_are_sniffed_from_the_bytes() -> None:
    assert sniff_media_type(picture("circle")) == "image/png"
    assert sniff_media_type(picture("circle", fmt="JPEG")) == "image/jpeg"
    assert sniff_media_type(picture("circle", fmt="WEBP")) == "image/webp"
    assert sniff_media_type(b"RIFF\x00\x00\x00\x00WAVEfmt ") == "audio/wav"
    assert sniff_media_type(b"ID3\x04\x00") == "audio/mpeg"
    for other in (b"", b"GIF89a", b"<html>", b"%PDF-1.7", b"RIFF\x00\x00\x00\x00AVI "):
        assert sniff_media_type(other) is None


def test_restyling_is_deterministic_and_fits_the_size() -> None:
    data = picture("circle", size=(300, 100))
    pixels = prepare_input(data, 64, 64)
    assert pixels.shape == (64, 64, 3)  # cropped to the square around the centre
    first = restyle(pixels, PROMPT, 1)
    assert np.array_equal(restyle(pixels, PROMPT, 1), first)
    assert not np.array_equal(restyle(pixels, PROMPT, 2), first)
    assert not np.array_equal(restyle(pixels, "a wild red fire", 1), first)
    # Transparency is laid over black; EXIF-less palette images decode too.
    rgba = Image.new("RGBA", (50, 40), (255, 0, 0, 0))
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    assert prepare_input(buffer.getvalue(), 10, 8).max() == 0


def test_pictures_over_the_pixel_limit_are_refused() -> None:
    # A tiny file that declares an enormous picture (a decompression bomb).
    buffer = io.BytesIO()
    Image.new("1", (8000, 6000)).save(buffer, format="PNG")
    assert len(buffer.getvalue()) < MEDIA_LIMIT
    with pytest.raises(InvalidInputError, match="more than 40000000 pixels"):
        prepare_input(buffer.getvalue(), 64, 64)
