"""The S3 storage backend against a real S3-compatible server (moto in server mode, a
separate process on 127.0.0.1): put/read/delete, presigned links downloaded over HTTP,
their stability and expiry, and a job whose output lands in the bucket and is later
deleted by the retention sweep.

moto serves presigned URLs without checking their signature or expiry, so the tests
also verify every link with `verify_presigned`, written here from the SigV4 query-auth
specification (independently of botocore, which gengate signs with).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError
from PIL import Image
from pydantic import ValidationError
from sqlalchemy import update

from gengate.config import StorageConfig, load_settings
from gengate.domain.states import JobStatus
from gengate.providers.base import InvalidInputError
from gengate.services import jobs as job_service
from gengate.services import uploads as upload_service
from gengate.services.gateway import Gateway
from gengate.services.jobs import SubmitRequest
from gengate.services.records import LinkBuilder, render_job
from gengate.storage.s3 import S3BlobStore
from gengate.storage.signing import expiry_for
from gengate.store.schema import outputs
from gengate.worker.maintenance import Maintenance
from gengate.worker.runtime import WorkerRuntime
from tests.conftest import fast_settings, new_caller
from tests.e2e.server import free_port

ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"
REGION = "us-east-1"
STARTUP_TIMEOUT_S = 30.0
WINDOW_S = 86_400 + 3_600


@dataclass
class MotoServer:
    """A moto S3 server process; each test makes its own bucket in it."""

    url: str
    process: subprocess.Popen[bytes]

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def new_bucket(self) -> str:
        bucket = f"gengate-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def storage(self, bucket: str, prefix: str = "media/") -> dict[str, str]:
        """The `storage` settings of a gateway that keeps its files in `bucket`."""
        return {
            "backend": "s3",
            "bucket": bucket,
            "prefix": prefix,
            "endpoint_url": self.url,
            "region": REGION,
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
        }

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_moto_server(log_path: Path) -> MotoServer:
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = MotoServer(f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto exited early:\n{log_path.read_text()}")
        try:
            httpx.get(f"{server.url}/moto-api/data.json", timeout=1)
            return server
        except httpx.HTTPError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"moto not ready in {STARTUP_TIMEOUT_S} s:\n{log_path.read_text()}")


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = start_moto_server(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bucket(moto: MotoServer) -> str:
    return moto.new_bucket()


def s3_store(moto: MotoServer, bucket: str, prefix: str = "media/") -> S3BlobStore:
    return S3BlobStore(StorageConfig(**moto.storage(bucket, prefix)), window_s=WINDOW_S)


def png(width: int = 32, height: int = 24) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


# -- an independent SigV4 presigned-URL verifier ---------------------------------------


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def verify_presigned(url: str, secret: str, now: datetime) -> bool:
    """Whether S3 would accept this presigned GET at `now` (SigV4 query authentication:
    signature, credential scope, validity window of at most seven days)."""
    split = urlsplit(url)
    params = parse_qsl(split.query, keep_blank_values=True)
    values = dict(params)
    try:
        signature = values["X-Amz-Signature"]
        signed_at = datetime.strptime(values["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        lifetime = int(values["X-Amz-Expires"])
        scope = values["X-Amz-Credential"].split("/", 1)[1]
    except (KeyError, ValueError, IndexError):
        return False
    if values.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
        return False
    if values["X-Amz-SignedHeaders"] != "host" or not 1 <= lifetime <= 604_800:
        return False
    if not signed_at <= now <= signed_at + timedelta(seconds=lifetime):
        return False
    canonical_query = "&".join(
        f"{quote(name, safe='-_.~')}={quote(value, safe='-_.~')}"
        for name, value in sorted(params)
        if name != "X-Amz-Signature"
    )
    canonical_request = "\n".join(
        ["GET", split.path, canonical_query, f"host:{split.netloc}\n", "host", "UNSIGNED-PAYLOAD"]
    )
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            values["X-Amz-Date"],
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    date, region, service, terminator = scope.split("/")
    key = _hmac(f"AWS4{secret}".encode(), date)
    for part in (region, service, terminator):
        key = _hmac(key, part)
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


# -- the backend on its own --------------------------------------------------------------


async def test_put_read_delete_round_trip(moto: MotoServer, bucket: str) -> None:
    store = s3_store(moto, bucket)
    data = png()
    await store.put("0190abcd/1-0.png", data, "image/png", filename="job_0190abcd-0.png")

    assert await store.read("0190abcd/1-0.png") == data
    head = moto.client().head_object(Bucket=bucket, Key="media/0190abcd/1-0.png")
    assert head["ContentType"] == "image/png"
    assert head["ContentDisposition"] == 'inline; filename="job_0190abcd-0.png"'
    assert head["ContentLength"] == len(data)
    assert store.local_path("0190abcd/1-0.png") is None

    await store.delete("0190abcd/1-0.png")
    assert await store.read("0190abcd/1-0.png") is None
    with pytest.raises(ClientError):
        moto.client().head_object(Bucket=bucket, Key="media/0190abcd/1-0.png")
    await store.delete("0190abcd/1-0.png")  # deleting a missing file is not an error
    assert await store.read("never/written.png") is None


async def test_a_presigned_link_downloads_the_file_over_http(moto: MotoServer, bucket: str) -> None:
    store = s3_store(moto, bucket)
    data = png(40, 30)
    await store.put("uploads/a b.png", data, "image/png", filename="upl_x.png")
    url = store.presigned_url("uploads/a b.png", expiry_for(datetime.now(UTC), 3600))
    assert url.startswith(f"{moto.url}/{bucket}/media/uploads/a%20b.png?")
    assert verify_presigned(url, SECRET_KEY, datetime.now(UTC))

    async with httpx.AsyncClient(timeout=10) as client:
        whole = await client.get(url)
        part = await client.get(url, headers={"Range": "bytes=10-19"})
    assert whole.status_code == 200
    assert whole.content == data
    assert whole.headers["content-type"] == "image/png"
    assert whole.headers["content-disposition"] == 'inline; filename="upl_x.png"'
    assert Image.open(io.BytesIO(whole.content)).size == (40, 30)
    assert part.status_code == 206
    assert part.content == data[10:20]


async def test_presigned_links_are_stable_and_end_at_the_link_expiry(
    moto: MotoServer, bucket: str
) -> None:
    now = datetime.now(UTC)
    expires = expiry_for(now, 86_400)
    first = s3_store(moto, bucket).presigned_url("job/1-0.png", expires)
    # Another process (a replica, or the same one an hour later) makes the same URL,
    # so a job's record and ETag stay the same within the expiry hour.
    again = s3_store(moto, bucket).presigned_url("job/1-0.png", expires)
    assert first == again
    query = dict(parse_qsl(urlsplit(first).query))
    signed_at = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert signed_at <= now
    assert signed_at.timestamp() + int(query["X-Amz-Expires"]) == expires
    assert list(query)[-1] == "X-Amz-Signature"

    ending = datetime.fromtimestamp(expires, UTC)
    assert verify_presigned(first, SECRET_KEY, now)
    assert verify_presigned(first, SECRET_KEY, ending)
    assert not verify_presigned(first, SECRET_KEY, ending + timedelta(seconds=1))
    assert not verify_presigned(first, "another-secret", now)
    tampered = first.replace("job/1-0.png", "job/1-1.png")
    assert not verify_presigned(tampered, SECRET_KEY, now)
    # A link whose expiry has passed (as a link handed out yesterday would be).
    stale = s3_store(moto, bucket).presigned_url("job/1-0.png", int(now.timestamp()) - 60)
    assert not verify_presigned(stale, SECRET_KEY, now)


async def test_presigned_key_recognises_only_this_stores_links(
    moto: MotoServer, bucket: str
) -> None:
    store = s3_store(moto, bucket)
    expires = expiry_for(datetime.now(UTC), 3600)
    url = store.presigned_url("uploads/0190.png", expires)
    assert store.presigned_key(url) == ("uploads/0190.png", expires)

    signature = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
    flipped = url.replace(signature, ("0" if signature[0] != "0" else "1") + signature[1:])
    boto_signed = moto.client().generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "media/uploads/0190.png"}
    )
    for foreign in (
        flipped,
        url.replace("uploads/0190.png", "uploads/0191.png"),
        s3_store(moto, moto.new_bucket()).presigned_url("uploads/0190.png", expires),
        s3_store(moto, bucket, prefix="other/").presigned_url("uploads/0190.png", expires),
        boto_signed,
        "https://example.com/media/uploads/0190.png",
        url.split("?")[0],
    ):
        assert store.presigned_key(foreign) is None, foreign


def test_s3_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match=r"storage\.bucket is required"):
        load_settings(None, storage={"backend": "s3"})
    with pytest.raises(ValidationError, match="link_ttl_s is at most"):
        load_settings(None, storage={"backend": "s3", "bucket": "b"}, link_ttl_s=7 * 86_400)
    with pytest.raises(ValidationError):
        load_settings(None, storage={"backend": "ftp"})


# -- through the gateway -------------------------------------------------------------------


async def test_a_job_output_lands_in_the_bucket_and_expires_there(
    moto: MotoServer, bucket: str, database_url: str, tmp_path: Path
) -> None:
    settings = fast_settings(
        tmp_path / "data", database_url=database_url, storage=moto.storage(bucket)
    )
    gw = await Gateway.open(settings)
    try:
        caller = await new_caller(gw)
        submitted = await job_service.submit_job(
            gw, caller.principal, SubmitRequest("echo", {"prompt": "into the bucket"})
        )
        runtime = WorkerRuntime(gw, [gw.catalog.get("echo")])
        await runtime.start()
        try:
            await runtime.drain(timeout_s=30)
        finally:
            await runtime.stop()
        row = await job_service.get_job(gw, caller.principal, submitted.job.id.hex)
        assert row.status == JobStatus.SUCCEEDED
        links = LinkBuilder.create(
            gw.signer, "http://gateway.test", now=gw.clock(), lifetime_s=settings.link_ttl_s
        )
        output = render_job(row, links)["result"]["outputs"][0]
        key = row.result["outputs"][0]["storage_key"]

        # The link is the bucket's own presigned URL, not a /v1/files link.
        assert output["url"].startswith(f"{moto.url}/{bucket}/media/{key}?")
        assert verify_presigned(output["url"], SECRET_KEY, datetime.now(UTC))
        async with httpx.AsyncClient(timeout=10) as client:
            download = await client.get(output["url"])
        assert download.status_code == 200
        assert download.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(download.content)).size == (64, 64)
        assert not (settings.files_dir / key).exists()  # nothing on local disk

        # A link of ours is read back from the bucket directly (media-URL inputs).
        opened = await upload_service.open_upload(gw, output["url"])
        assert opened == (download.content, "image/png")
        assert await upload_service.open_upload(gw, f"{moto.url}/{bucket}/media/{key}") is None

        async with gw.db.transaction() as conn:
            await conn.execute(update(outputs).values(expires_at=gw.clock() - timedelta(seconds=1)))
        await Maintenance(gw).sweep()
        with pytest.raises(ClientError):
            moto.client().head_object(Bucket=bucket, Key=f"media/{key}")
        row = await job_service.get_job(gw, caller.principal, submitted.job.id.hex)
        expired = render_job(row, links)["result"]
        assert expired["url"] is None
        assert expired["outputs"][0]["expired"] is True
        with pytest.raises(InvalidInputError):
            await upload_service.open_upload(gw, output["url"])
    finally:
        await gw.close()
