"""A real `gengate serve` with the S3 backend (configured by environment variables)
against a real S3-compatible server (moto): uploads and job outputs are stored in the
bucket, their links are presigned URLs that download over HTTP, deleting an asset
deletes the object, and an old `/v1/files` link redirects to the bucket."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from botocore.exceptions import ClientError
from PIL import Image

from gengate.storage.signing import LinkSigner
from tests.e2e.server import ServerProcess, start_server
from tests.integration.test_storage_s3 import (
    SECRET_KEY,
    MotoServer,
    start_moto_server,
    verify_presigned,
)
from tests.integration.test_storage_uploads import image_bytes

LINK_SECRET = "e2e-s3-link-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def bucket_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = start_moto_server(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def bucket(bucket_server: MotoServer) -> str:
    return bucket_server.new_bucket()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, bucket_server: MotoServer, bucket: str
) -> Iterator[ServerProcess]:
    env = {
        f"GENGATE_STORAGE__{name.upper()}": value
        for name, value in bucket_server.storage(bucket, prefix="gengate/").items()
    }
    env["GENGATE_SECRET_KEY"] = LINK_SECRET
    process = start_server(tmp_path_factory.mktemp("s3-server"), env=env)
    try:
        yield process
    finally:
        process.stop()


def object_exists(bucket_server: MotoServer, bucket: str, key: str) -> bool:
    try:
        bucket_server.client().head_object(Bucket=bucket, Key=key)
    except ClientError:
        return False
    return True


def test_uploads_and_outputs_live_in_the_bucket(
    server: ServerProcess, account: dict[str, str], bucket_server: MotoServer, bucket: str
) -> None:
    picture = image_bytes("PNG", (30, 20))
    with server.client(account["api_key"]) as client:
        uploaded = client.post("/v1/uploads", files={"file": ("p.png", picture, "image/png")})
        assert uploaded.status_code == 201, uploaded.text
        upload = uploaded.json()
        job = client.post("/v1/models/echo/run", json={"input": {"prompt": "to S3"}}).json()
        assert job["status"] == "succeeded", job
        again = client.get(f"/v1/jobs/{job['id']}").json()
    upload_hex = upload["id"].removeprefix("upl_")
    assert upload["url"].startswith(
        f"{bucket_server.url}/{bucket}/gengate/uploads/{upload_hex}.png?X-Amz-"
    )
    output_url = job["result"]["url"]
    assert output_url.startswith(f"{bucket_server.url}/{bucket}/gengate/")
    assert again["result"]["url"] == output_url  # stable within the hour: same ETag body
    now = datetime.now(UTC)
    assert verify_presigned(upload["url"], SECRET_KEY, now)
    assert verify_presigned(output_url, SECRET_KEY, now)

    with httpx.Client(timeout=30) as anonymous:
        stored_upload = anonymous.get(upload["url"])
        output = anonymous.get(output_url)
    assert stored_upload.content == picture
    assert stored_upload.headers["content-type"] == "image/png"
    assert output.status_code == 200
    assert output.headers["content-type"] == "image/png"
    assert output.headers["content-disposition"] == f'inline; filename="{job["id"]}-0.png"'
    assert Image.open(io.BytesIO(output.content)).size == (64, 64)
    local_files = server.data_dir / "files"
    assert not local_files.exists() or not any(local_files.rglob("*.png"))

    key = "gengate/" + output_url.split("/gengate/", 1)[1].split("?", 1)[0]
    assert object_exists(bucket_server, bucket, key)
    asset_id = job["result"]["outputs"][0]["asset_id"]
    with server.client(account["api_key"]) as client:
        deleted = client.delete(f"/v1/assets/{asset_id}").json()
        record = client.get(f"/v1/jobs/{job['id']}").json()
    assert deleted["expired"] is True
    assert record["result"]["outputs"][0]["expired"] is True
    assert not object_exists(bucket_server, bucket, key)


def test_a_files_link_redirects_to_the_bucket(
    server: ServerProcess, account: dict[str, str]
) -> None:
    with server.client(account["api_key"]) as client:
        job = client.post("/v1/models/echo/run", json={"input": {"prompt": "old link"}}).json()
    key = job["result"]["url"].split("/gengate/", 1)[1].split("?", 1)[0]
    path = LinkSigner(LINK_SECRET).path(key, int(time.time()) + 3600)
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        redirect = anonymous.get(path)
        assert redirect.status_code == 307
        assert redirect.headers["location"].startswith(job["result"]["url"].split("?")[0])
        followed = anonymous.get(path, follow_redirects=True)
    assert followed.status_code == 200
    assert Image.open(io.BytesIO(followed.content)).format == "PNG"
