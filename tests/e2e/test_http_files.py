"""Output files behind signed, expiring links: downloads, Range, tampered and
expired links, GENGATE_PUBLIC_URL and GENGATE_SECRET_KEY."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import httpx
import pytest
from PIL import Image

from gengate.storage.signing import LinkSigner
from tests.e2e.server import ServerProcess, assert_error, start_server

SECRET_KEY = "e2e-secret-key-that-signs-every-link-0123456789"
PUBLIC_URL = "https://media.example.test/gengate"


@pytest.fixture(scope="module")
def server(shared_server: ServerProcess) -> ServerProcess:
    """The session's default-config server: these tests only touch their own accounts.
    (That links outlive a restart is shown where a server restarts anyway, in
    test_cli.py.)"""
    return shared_server


@pytest.fixture(scope="module")
def branded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with its own secret key and a public URL in front of it."""
    process = start_server(
        tmp_path_factory.mktemp("branded"),
        env={"GENGATE_SECRET_KEY": SECRET_KEY, "GENGATE_PUBLIC_URL": PUBLIC_URL},
    )
    try:
        yield process
    finally:
        process.stop()


def _image_job(server: ServerProcess, api_key: str, width: int = 128, height: int = 96) -> Any:
    with server.client(api_key) as client:
        answer = client.post(
            "/v1/models/local-image/run",
            json={"input": {"prompt": "a harbour at dusk", "width": width, "height": height}},
        )
    assert answer.status_code == 200, answer.text
    job = answer.json()
    assert job["status"] == "succeeded", job
    return job


def _parts(url: str) -> tuple[str, str, str]:
    """(storage key, expires, sig) of a file link."""
    split = urlsplit(url)
    query = parse_qs(split.query)
    key = unquote(split.path.split("/v1/files/", 1)[1])
    return key, query["expires"][0], query["sig"][0]


def _link(key: str, **query: str) -> str:
    return f"/v1/files/{key}?{urlencode(query)}"


def _anonymous(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30)


def test_output_link_downloads_the_image_at_the_requested_size(
    server: ServerProcess, account: dict[str, str]
) -> None:
    job = _image_job(server, account["api_key"])
    output = job["result"]["outputs"][0]
    assert job["result"]["url"] == output["url"]
    assert output["url"].startswith(f"{server.url}/v1/files/")
    assert (output["width"], output["height"]) == (128, 96)
    assert output["content_type"] == "image/png"
    _, expires, sig = _parts(output["url"])
    assert output["url"].endswith(f"&sig={sig}")  # sig is the last parameter
    expires_at = datetime.fromisoformat(output["expires_at"].replace("Z", "+00:00"))
    assert int(expires) == int(expires_at.timestamp())
    lifetime_s = expires_at.timestamp() - time.time()
    assert 23 * 3600 < lifetime_s <= 25 * 3600  # 24 h, rounded up to the hour

    with _anonymous(server) as client:  # the signature alone authorises
        download = client.get(output["url"])
    assert download.status_code == 200, download.text
    assert download.headers["content-type"] == "image/png"
    assert len(download.content) == output["bytes"]
    image = Image.open(io.BytesIO(download.content))
    assert image.format == "PNG"
    assert image.size == (128, 96)


def test_output_link_serves_ranges(server: ServerProcess, account: dict[str, str]) -> None:
    output = _image_job(server, account["api_key"], 64, 64)["result"]["outputs"][0]
    with _anonymous(server) as client:
        whole = client.get(output["url"]).content
        part = client.get(output["url"], headers={"Range": "bytes=0-9"})
        tail = client.get(output["url"], headers={"Range": "bytes=-4"})
    assert part.status_code == 206
    assert part.content == whole[:10]
    assert part.headers["content-range"] == f"bytes 0-9/{len(whole)}"
    assert tail.status_code == 206
    assert tail.content == whole[-4:]


def test_tampered_links_are_403(server: ServerProcess, account: dict[str, str]) -> None:
    first = _image_job(server, account["api_key"], 64, 64)["result"]["outputs"][0]["url"]
    other = _image_job(server, account["api_key"], 96, 64)["result"]["outputs"][0]["url"]
    key, expires, sig = _parts(first)
    other_key, _, other_sig = _parts(other)
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    forged = [
        _link(key, expires=expires, sig=flipped),
        _link(key, expires=expires, sig=sig[:-1]),
        _link(key, expires=expires, sig=sig + "A"),
        _link(key, expires=expires, sig=other_sig),
        _link(key, expires=expires),
        _link(key, sig=sig),
        _link(key),
        _link(key, expires=str(int(expires) + 3600), sig=sig),
        _link(key, expires=str(int(time.time()) - 60), sig=sig),
        _link(key, expires="soon", sig=sig),
        _link(key, expires="-1", sig=sig),
        _link(key, expires=expires + "0", sig=sig),
        _link(other_key, expires=expires, sig=sig),
        _link(key + "x", expires=expires, sig=sig),
        _link("no/such/file.png", expires=expires, sig=sig),
    ]
    with _anonymous(server) as client:
        assert client.get(first).status_code == 200
        for link in forged:
            assert_error(client.get(link), 403, "forbidden")


def test_malformed_links_are_403_too(server: ServerProcess, account: dict[str, str]) -> None:
    """SPEC §2 Files: a tampered, malformed *or* expired link answers 403, however it
    is malformed (here: parameters longer than any real link has)."""
    url = _image_job(server, account["api_key"], 64, 64)["result"]["url"]
    key, expires, sig = _parts(url)
    with _anonymous(server) as client:
        for link in (
            _link(key, expires="1" * 21, sig=sig),
            _link(key, expires=expires, sig="A" * 101),
        ):
            assert_error(client.get(link), 403, "forbidden")


def test_a_correctly_signed_but_expired_link_is_403(branded: ServerProcess) -> None:
    account = branded.create_account()
    output = _image_job(branded, account["api_key"], 64, 64)["result"]["outputs"][0]
    key, _, _ = _parts(output["url"])
    signer = LinkSigner(SECRET_KEY)
    now = int(time.time())
    with _anonymous(branded) as client:
        # The key the server was given signs links it accepts...
        assert client.get(signer.path(key, now + 600)).status_code == 200
        # ...until they expire.
        assert_error(client.get(signer.path(key, now - 1)), 403, "forbidden")
        assert_error(client.get(signer.path(key, now - 86_400)), 403, "forbidden")
        # Another secret's signature is worthless.
        stranger = LinkSigner("some-other-secret")
        assert_error(client.get(stranger.path(key, now + 600)), 403, "forbidden")
        # A well-signed link to a file that does not exist is 404.
        assert_error(client.get(signer.path("nothing/here.png", now + 600)), 404, "not_found")


def test_a_signed_link_cannot_leave_the_files_folder(branded: ServerProcess) -> None:
    signer = LinkSigner(SECRET_KEY)
    expires = int(time.time()) + 600
    with _anonymous(branded) as client:
        for key in ("../gengate.db", "files/../../gengate.db", "/etc/passwd"):
            raw = signer.path(key, expires).replace("..", "%2E%2E")
            answer = client.get(raw)
            assert answer.status_code in (403, 404), (key, answer.status_code)
            assert_error(answer, answer.status_code, answer.json()["error"])
            assert not answer.content.startswith(b"SQLite format")


def test_links_start_with_the_public_url(branded: ServerProcess) -> None:
    account = branded.create_account()
    job = _image_job(branded, account["api_key"], 64, 64)
    url = job["result"]["url"]
    assert url.startswith(f"{PUBLIC_URL}/v1/files/")
    with branded.client(account["api_key"]) as client:
        again = client.get(f"/v1/jobs/{job['id']}").json()
        assert again["result"]["url"].startswith(f"{PUBLIC_URL}/v1/files/")
        listed = client.get("/v1/jobs").json()["jobs"][0]
        assert listed["result"]["url"].startswith(f"{PUBLIC_URL}/v1/files/")
    # Behind the public URL sits this server: the same path and query download the file.
    with _anonymous(branded) as client:
        download = client.get(url.removeprefix(PUBLIC_URL))
    assert download.status_code == 200
    assert Image.open(io.BytesIO(download.content)).size == (64, 64)
