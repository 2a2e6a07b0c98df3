"""Uploads through the services on SQLite and PostgreSQL: content sniffing, limits,
per-account isolation, and `open_upload`, which reads a link of ours back from storage
(and leaves every other URL to the caller)."""

from __future__ import annotations

import io
import time
from pathlib import Path
from urllib.parse import urlsplit

import av
import numpy as np
import pytest
from PIL import Image

from gengate.domain.errors import InvalidInput, InvalidRequest, NotFound
from gengate.providers.base import InvalidInputError
from gengate.services import uploads as upload_service
from gengate.services.gateway import Gateway
from gengate.services.uploads import sniff_content_type
from tests.conftest import Caller, new_caller
from tests.integration.support import open_gateway
from tests.integration.test_assets import BASE_URL, echo, links_of, run_jobs, wav_bytes


def image_bytes(fmt: str, size: tuple[int, int] = (48, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(buffer, format=fmt)
    return buffer.getvalue()


def mp3_bytes(seconds: float = 0.3, rate: int = 44_100, *, id3: bool = True) -> bytes:
    """A real MP3 (a 440 Hz tone), with or without an ID3 header in front of its frames."""
    buffer = io.BytesIO()
    options = {} if id3 else {"id3v2_version": "0", "write_xing": "0"}
    with av.open(buffer, "w", format="mp3", options=options) as container:
        stream = container.add_stream("libmp3lame", rate=rate, layout="mono")
        t = np.arange(int(seconds * rate)) / rate
        samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="fltp", layout="mono")
        frame.rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def decoded_samples(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as container:
        return sum(frame.samples for frame in container.decode(audio=0))


def test_the_type_is_sniffed_from_the_content() -> None:
    bare_mp3 = mp3_bytes(id3=False)
    assert bare_mp3[:2] == b"\xff\xfb"  # frames only, no ID3 header
    accepted = {
        "image/png": image_bytes("PNG"),
        "image/jpeg": image_bytes("JPEG"),
        "image/webp": image_bytes("WEBP"),
        "audio/wav": wav_bytes(),
    }
    for content_type, data in accepted.items():
        assert sniff_content_type(data) == content_type
    assert sniff_content_type(mp3_bytes()) == "audio/mpeg"
    assert sniff_content_type(bare_mp3) == "audio/mpeg"
    refused = [
        image_bytes("GIF"),
        image_bytes("BMP"),
        b"just some text that claims to be an image",
        b"<html><body><img src=x onerror=alert(1)></body></html>",
        b'<svg xmlns="http://www.w3.org/2000/svg"></svg>',
        b"%PDF-1.7\n",
        b"\x00\x01\x02\x03",
        b"",
    ]
    for data in refused:
        assert sniff_content_type(data) is None, data[:20]


async def test_an_upload_belongs_to_its_account(gateway: Gateway, caller: Caller) -> None:
    data = image_bytes("JPEG", (64, 40))
    row = await upload_service.create_upload(
        gateway, caller.principal, data, filename="C:\\photos\\..\\holiday.jpeg"
    )
    assert (row.content_type, row.bytes, row.filename) == ("image/jpeg", len(data), "holiday.jpeg")
    assert row.storage_key == f"uploads/{row.id.hex}.jpg"
    assert (gateway.settings.files_dir / row.storage_key).read_bytes() == data

    links = links_of(gateway)
    record = upload_service.render_upload(row, links)
    assert record["object"] == "upload"
    assert record["id"] == f"upl_{row.id.hex}"
    assert record["url"].startswith(f"{BASE_URL}/v1/files/uploads/")
    assert record["expired"] is False
    assert await upload_service.open_upload(gateway, record["url"]) == (data, "image/jpeg")

    stranger = await new_caller(gateway, name="stranger")
    for upload_id in (record["id"], row.id.hex):
        with pytest.raises(NotFound):
            await upload_service.get_upload(gateway, stranger.principal, upload_id)
        with pytest.raises(NotFound):
            await upload_service.delete_upload(gateway, stranger.principal, upload_id)
    for malformed in ("upl_123", "nonsense", "out_" + row.id.hex + "0"):
        with pytest.raises(NotFound):
            await upload_service.get_upload(gateway, caller.principal, malformed)
    assert (gateway.settings.files_dir / row.storage_key).is_file()

    deleted = await upload_service.delete_upload(gateway, caller.principal, record["id"])
    assert not (gateway.settings.files_dir / row.storage_key).exists()
    gone = upload_service.render_upload(deleted, links)
    assert gone["expired"] is True and gone["url"] is None
    again = await upload_service.delete_upload(gateway, caller.principal, record["id"])
    assert upload_service.render_upload(again, links) == gone


async def test_limits_empty_and_unknown_files_are_refused(
    database_url: str, tmp_path: Path
) -> None:
    async with open_gateway(database_url, tmp_path / "data", max_upload_bytes=2_000) as gw:
        caller = await new_caller(gw)
        with pytest.raises(InvalidRequest) as too_large:
            await upload_service.create_upload(
                gw, caller.principal, image_bytes("BMP", (40, 40))[:2_001], filename=None
            )
        assert too_large.value.details == {"max_upload_bytes": 2_000}
        with pytest.raises(InvalidInput, match="empty"):
            await upload_service.create_upload(gw, caller.principal, b"", filename="x.png")
        with pytest.raises(InvalidInput, match="accepted type") as unknown:
            await upload_service.create_upload(
                gw, caller.principal, b"GIF89a" + b"\x00" * 40, filename="x.png"
            )
        assert "image/png" in unknown.value.details["accepted"]
        # Exactly at the limit is fine.
        png = image_bytes("PNG", (8, 8))
        padded = png + b"\x00" * (2_000 - len(png))
        row = await upload_service.create_upload(gw, caller.principal, padded, filename=None)
        assert row.bytes == 2_000
        stored = sorted(p.name for p in (gw.settings.files_dir / "uploads").iterdir())
        assert stored == [f"{row.id.hex}.png"]  # nothing refused was kept


async def test_open_upload_reads_our_links_and_leaves_others(
    gateway: Gateway, caller: Caller
) -> None:
    audio = mp3_bytes()
    row = await upload_service.create_upload(gateway, caller.principal, audio, filename="a.mp3")
    url = upload_service.render_upload(row, links_of(gateway))["url"]

    data, content_type = await upload_service.open_upload(gateway, url) or (b"", "")
    assert (data, content_type) == (audio, "audio/mpeg")
    assert decoded_samples(data) == int(0.3 * 44_100)
    # The signature, not the host, makes a link ours (the public URL may differ).
    elsewhere = "https://media.example.test/base" + url.removeprefix(BASE_URL)
    assert await upload_service.open_upload(gateway, elsewhere) == (audio, "audio/mpeg")

    # Any other URL is the caller's to fetch (under the address guard).
    split = urlsplit(url)
    sig = split.query.rsplit("sig=", 1)[1]
    tampered = url.replace(sig, ("A" if sig[0] != "A" else "B") + sig[1:])
    for foreign in (
        "https://example.com/cat.png",
        tampered,
        url.split("?")[0],
        url.replace(row.storage_key, row.storage_key.replace(".mp3", ".wav")),
    ):
        assert await upload_service.open_upload(gateway, foreign) is None, foreign

    # Our own link, but expired or pointing at nothing: the job's input is invalid.
    expired = BASE_URL + gateway.signer.path(row.storage_key, int(time.time()) - 60)
    with pytest.raises(InvalidInputError, match="expired"):
        await upload_service.open_upload(gateway, expired)
    nowhere = BASE_URL + gateway.signer.path("uploads/nothing.png", int(time.time()) + 600)
    with pytest.raises(InvalidInputError, match="no longer exists"):
        await upload_service.open_upload(gateway, nowhere)

    # A job's output link works as an input too (restyling a generated image).
    (job,) = await run_jobs(gateway, caller, [echo("an output as input")])
    output_url = BASE_URL + gateway.signer.path(
        job.result["outputs"][0]["storage_key"], int(time.time()) + 600
    )
    output_bytes, output_type = await upload_service.open_upload(gateway, output_url) or (b"", "")
    assert output_type == "image/png"
    assert Image.open(io.BytesIO(output_bytes)).size == (64, 64)
