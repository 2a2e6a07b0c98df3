"""File serving over real HTTP: Range requests as browsers send them to seek in audio
and video (single, suffix, open-ended and multiple ranges, 416), the content type and
download name, HEAD, and links to uploads and deleted files."""

from __future__ import annotations

import io
import time
import wave
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest
from PIL import Image

from tests.e2e.server import ServerProcess, assert_error


@pytest.fixture(scope="module")
def server(shared_server: ServerProcess) -> ServerProcess:
    return shared_server


def tone_wav(seconds: float = 0.5, rate: int = 16_000) -> bytes:
    """A WAV whose every byte differs from its neighbours, so ranges are easy to check."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes((n * 7) % 251 for n in range(int(seconds * rate) * 2)))
    return buffer.getvalue()


def upload(server: ServerProcess, api_key: str, data: bytes, name: str = "tone.wav") -> Any:
    with server.client(api_key) as client:
        answer = client.post("/v1/uploads", files={"file": (name, data, "audio/wav")})
    assert answer.status_code == 201, answer.text
    return answer.json()


def anonymous(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30)


@pytest.fixture
def audio(server: ServerProcess, account: dict[str, str]) -> tuple[str, bytes]:
    """(link, bytes) of an uploaded WAV file."""
    data = tone_wav()
    return upload(server, account["api_key"], data)["url"], data


def test_a_range_answers_206_with_those_bytes(
    audio: tuple[str, bytes], server: ServerProcess
) -> None:
    url, data = audio
    size = len(data)
    with anonymous(server) as client:
        whole = client.get(url)
        assert whole.status_code == 200
        assert whole.content == data
        assert whole.headers["accept-ranges"] == "bytes"
        assert whole.headers["content-type"] == "audio/wav"
        for header, start, end in (
            ("bytes=0-0", 0, 0),
            ("bytes=100-1099", 100, 1099),
            ("bytes=15000-", 15000, size - 1),  # open-ended: to the end
            ("bytes=-500", size - 500, size - 1),  # suffix: the last 500 bytes
            (f"bytes={size - 10}-{size + 5000}", size - 10, size - 1),  # clipped at the end
        ):
            part = client.get(url, headers={"Range": header})
            assert part.status_code == 206, header
            assert part.content == data[start : end + 1], header
            assert part.headers["content-range"] == f"bytes {start}-{end}/{size}", header
            assert part.headers["content-length"] == str(end - start + 1), header
            assert part.headers["content-type"] == "audio/wav"


def test_several_ranges_answer_multipart_byteranges(
    audio: tuple[str, bytes], server: ServerProcess
) -> None:
    url, data = audio
    with anonymous(server) as client:
        answer = client.get(url, headers={"Range": "bytes=0-9, 200-219, -16"})
    assert answer.status_code == 206
    media_type, _, boundary = answer.headers["content-type"].partition("; boundary=")
    assert media_type == "multipart/byteranges"
    parts = []
    for chunk in answer.content.split(b"--" + boundary.encode())[1:-1]:
        head, _, body = chunk.strip(b"\r\n").partition(b"\r\n\r\n")
        headers = dict(line.decode().lower().split(": ", 1) for line in head.split(b"\r\n") if line)
        parts.append((headers["content-range"], headers["content-type"], body))
    size = len(data)
    assert parts == [
        (f"bytes 0-9/{size}", "audio/wav", data[0:10]),
        (f"bytes 200-219/{size}", "audio/wav", data[200:220]),
        (f"bytes {size - 16}-{size - 1}/{size}", "audio/wav", data[-16:]),
    ]


def test_an_unsatisfiable_range_is_416_and_a_malformed_one_is_ignored(
    audio: tuple[str, bytes], server: ServerProcess
) -> None:
    url, data = audio
    size = len(data)
    with anonymous(server) as client:
        beyond = client.get(url, headers={"Range": f"bytes={size}-{size + 100}"})
        body = assert_error(beyond, 416, "invalid_request")
        assert beyond.headers["content-range"] == f"bytes */{size}"
        assert body["details"] == {"size": size}
        # RFC 9110 lets a server ignore a Range it cannot parse: the whole file.
        for malformed in ("bytes=abc", "pages=1-2", "bytes", "bytes=5-1"):
            answer = client.get(url, headers={"Range": malformed})
            assert answer.status_code == 200, malformed
            assert answer.content == data, malformed


def test_downloads_have_the_stored_type_and_a_sensible_name(
    server: ServerProcess, account: dict[str, str]
) -> None:
    with server.client(account["api_key"]) as client:
        job = client.post(
            "/v1/models/echo/run", json={"input": {"prompt": "a name for the file"}}
        ).json()
    assert job["status"] == "succeeded", job
    url = job["result"]["url"]
    with anonymous(server) as client:
        answer = client.get(url)
        head = client.head(url)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/png"
    assert answer.headers["content-disposition"] == f'inline; filename="{job["id"]}-0.png"'
    assert Image.open(io.BytesIO(answer.content)).format == "PNG"
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(answer.content))
    assert head.headers["content-type"] == "image/png"

    uploaded = upload(server, account["api_key"], tone_wav(0.1), name="../../secret name.wav")
    with anonymous(server) as client:
        answer = client.get(uploaded["url"])
    assert answer.headers["content-disposition"] == f'inline; filename="{uploaded["id"]}.wav"'


def test_tampered_and_expired_upload_links_are_403(
    audio: tuple[str, bytes], server: ServerProcess
) -> None:
    url, _ = audio
    split = urlsplit(url)
    query = parse_qs(split.query)
    key = unquote(split.path.removeprefix("/v1/files/"))
    expires, sig = query["expires"][0], query["sig"][0]
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    with anonymous(server) as client:
        for link in (
            f"/v1/files/{key}?expires={expires}&sig={flipped}",
            f"/v1/files/{key}?expires={int(expires) - 3600}&sig={sig}",
            f"/v1/files/{key}?expires={int(time.time()) - 1}&sig={sig}",
            f"/v1/files/{key.replace('.wav', '.png')}?expires={expires}&sig={sig}",
            f"/v1/files/{key}?sig={sig}&expires={expires}x",
            f"/v1/files/{key}",
        ):
            assert_error(client.get(link), 403, "forbidden")
            assert_error(client.get(link, headers={"Range": "bytes=0-9"}), 403, "forbidden")


def test_the_link_of_a_deleted_file_is_404(server: ServerProcess, account: dict[str, str]) -> None:
    uploaded = upload(server, account["api_key"], tone_wav(0.1))
    with server.client(account["api_key"]) as client:
        job = client.post("/v1/models/echo/run", json={"input": {"prompt": "short"}}).json()
        asset_id = job["result"]["outputs"][0]["asset_id"]
        assert client.delete(f"/v1/uploads/{uploaded['id']}").status_code == 200
        assert client.delete(f"/v1/assets/{asset_id}").status_code == 200
    with anonymous(server) as client:
        for link in (uploaded["url"], job["result"]["url"]):
            assert_error(client.get(link), 404, "not_found")
