"""`POST /v1/uploads` over real HTTP: every accepted type (judged by content, not by
name or declared type), decoded back from its link; refusals in the error shape; the
size limit; accounts kept apart; and expiry by the server's own janitor."""

from __future__ import annotations

import io
import sqlite3
import time
import wave
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.e2e.server import ServerProcess, assert_error, start_server
from tests.integration.test_storage_uploads import decoded_samples, image_bytes, mp3_bytes

UPLOAD_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with a small upload limit (its janitor sweeps every 0.2 s)."""
    process = start_server(
        tmp_path_factory.mktemp("uploads"), settings={"max_upload_bytes": UPLOAD_LIMIT}
    )
    try:
        yield process
    finally:
        process.stop()


def wav_bytes(seconds: float = 0.2, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x00\x10" * int(seconds * rate))
    return buffer.getvalue()


def post_file(
    client: httpx.Client,
    data: bytes,
    *,
    name: str = "file",
    declared: str = "application/octet-stream",
) -> httpx.Response:
    return client.post("/v1/uploads", files={"file": (name, data, declared)})


def download(server: ServerProcess, url: str) -> httpx.Response:
    with httpx.Client(timeout=30) as client:  # no key: the link's signature authorises
        answer = client.get(url)
    assert answer.status_code == 200, answer.text
    return answer


def test_every_accepted_type_round_trips(server: ServerProcess, account: dict[str, str]) -> None:
    samples: list[tuple[bytes, str, str, str]] = [
        (image_bytes("PNG", (40, 30)), "image/png", "photo.jpg", "image/jpeg"),
        (image_bytes("JPEG", (40, 30)), "image/jpeg", "notes.txt", "text/plain"),
        (image_bytes("WEBP", (40, 30)), "image/webp", "x", "application/octet-stream"),
        (wav_bytes(), "audio/wav", "voice.mp3", "audio/mpeg"),
        (mp3_bytes(0.3), "audio/mpeg", "song", "image/png"),
    ]
    with server.client(account["api_key"]) as client:
        for data, sniffed, name, declared in samples:
            answer = post_file(client, data, name=name, declared=declared)
            assert answer.status_code == 201, answer.text
            body = answer.json()
            assert set(body) == {
                "object",
                "id",
                "url",
                "url_expires_at",
                "content_type",
                "bytes",
                "filename",
                "created_at",
                "expires_at",
                "expired",
            }
            assert body["content_type"] == sniffed  # the bytes decide, not name or header
            assert body["bytes"] == len(data)
            assert body["filename"] == name
            assert body["expired"] is False
            assert answer.headers["location"] == f"/v1/uploads/{body['id']}"
            created = datetime.fromisoformat(body["created_at"].replace("Z", "+00:00"))
            expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
            assert expires - created == timedelta(days=1)  # upload_ttl_s default

            fetched = download(server, body["url"])
            assert fetched.content == data
            assert fetched.headers["content-type"] == sniffed
            if sniffed.startswith("image/"):
                assert Image.open(io.BytesIO(fetched.content)).size == (40, 30)
            elif sniffed == "audio/wav":
                with wave.open(io.BytesIO(fetched.content)) as decoded:
                    assert decoded.getnframes() == int(0.2 * 8000)
            else:
                assert decoded_samples(fetched.content) == int(0.3 * 44_100)

            again = client.get(f"/v1/uploads/{body['id']}")
            assert again.status_code == 200
            assert again.json()["url"] == body["url"]  # same link within the hour


def test_refusals_use_the_error_shape(server: ServerProcess, account: dict[str, str]) -> None:
    with server.client(account["api_key"]) as client:
        unknown = assert_error(
            post_file(client, image_bytes("GIF"), name="a.png", declared="image/png"),
            422,
            "invalid_input",
        )
        assert "image/png" in unknown["details"]["accepted"]
        assert_error(post_file(client, b"<html></html>", name="a.png"), 422, "invalid_input")
        assert_error(post_file(client, b"", name="empty.png"), 422, "invalid_input")

        png = image_bytes("PNG", (8, 8))
        at_limit = png + b"\x00" * (UPLOAD_LIMIT - len(png))
        assert post_file(client, at_limit).status_code == 201
        too_large = assert_error(post_file(client, at_limit + b"\x00"), 400, "invalid_request")
        assert too_large["details"] == {"max_upload_bytes": UPLOAD_LIMIT}

        no_file = client.post("/v1/uploads", data={"other": "field"})
        assert_error(no_file, 400, "invalid_request")
        assert_error(client.post("/v1/uploads", json={"file": "x"}), 400, "invalid_request")
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        assert_error(post_file(anonymous, png), 401, "unauthorized")


def test_uploads_are_kept_apart_by_account(server: ServerProcess) -> None:
    owner = server.create_account("owner")
    stranger = server.create_account("stranger")
    with server.client(owner["api_key"]) as client:
        mine = post_file(client, image_bytes("PNG")).json()
    with server.client(stranger["api_key"]) as client:
        assert_error(client.get(f"/v1/uploads/{mine['id']}"), 404, "not_found")
        assert_error(client.delete(f"/v1/uploads/{mine['id']}"), 404, "not_found")
        assert_error(client.get("/v1/uploads/upl_nothex"), 404, "not_found")
    download(server, mine["url"])  # the stranger's attempts changed nothing
    with server.client(owner["api_key"]) as client:
        deleted = client.delete(f"/v1/uploads/{mine['id']}")
        assert deleted.status_code == 200
        assert deleted.json()["expired"] is True and deleted.json()["url"] is None
        assert client.delete(f"/v1/uploads/{mine['id']}").json() == deleted.json()


def test_expired_uploads_are_deleted_by_the_janitor(
    server: ServerProcess, account: dict[str, str]
) -> None:
    with server.client(account["api_key"]) as client:
        body = post_file(client, wav_bytes()).json()
    upload_hex = body["id"].removeprefix("upl_")
    stored = server.data_dir / "files" / "uploads" / f"{upload_hex}.wav"
    assert stored.is_file()
    past = (datetime.now(UTC) - timedelta(seconds=1)).replace(tzinfo=None).isoformat(sep=" ")
    with sqlite3.connect(server.data_dir / "gengate.db") as db:
        db.execute("UPDATE uploads SET expires_at = ? WHERE id = ?", (past, upload_hex))
    deadline = time.monotonic() + 10
    record: dict[str, Any] = body
    with server.client(account["api_key"]) as client:
        while not record["expired"]:
            assert time.monotonic() < deadline, "the janitor did not expire the upload"
            time.sleep(0.05)
            record = client.get(f"/v1/uploads/{body['id']}").json()
    assert record["url"] is None
    assert not stored.exists()
    with httpx.Client(timeout=30) as anonymous:
        assert_error(anonymous.get(body["url"]), 404, "not_found")
