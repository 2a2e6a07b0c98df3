"""`/v1/assets` over real HTTP: listing with filters and cursors, one asset with a
fresh link, deleting (the job's record and ETag change), and accounts kept apart."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.e2e.server import ServerProcess, assert_error


@pytest.fixture(scope="module")
def server(shared_server: ServerProcess) -> ServerProcess:
    return shared_server


def run(client: httpx.Client, prompt: str, **tags: str) -> dict[str, Any]:
    answer = client.post(
        "/v1/models/echo/run",
        json={
            "input": {"prompt": prompt},
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        },
    )
    assert answer.status_code == 200, answer.text
    job: dict[str, Any] = answer.json()
    assert job["status"] == "succeeded", job
    return job


def asset_ids(client: httpx.Client, **params: Any) -> list[str]:
    answer = client.get("/v1/assets", params=params)
    assert answer.status_code == 200, answer.text
    return [asset["id"] for asset in answer.json()["assets"]]


def test_assets_are_listed_and_filtered(server: ServerProcess, account: dict[str, str]) -> None:
    with server.client(account["api_key"]) as client:
        red = run(client, "red", team="red", tier="gold")
        blue = run(client, "blue", team="blue")
        image = client.post(
            "/v1/models/local-image/run",
            json={"input": {"prompt": "a lighthouse", "width": 64, "height": 64}},
        ).json()
        assert image["status"] == "succeeded", image
        ids = [job["result"]["outputs"][0]["asset_id"] for job in (red, blue, image)]

        assert asset_ids(client) == sorted(ids, reverse=True)
        assert asset_ids(client, tag="team:red") == [ids[0]]
        assert asset_ids(client, tag=["team:red", "tier:gold"]) == [ids[0]]
        assert asset_ids(client, tag=["team:blue", "tier:gold"]) == []
        assert sorted(asset_ids(client, modality="image")) == sorted(ids)
        assert asset_ids(client, modality="video") == []
        assert asset_ids(client, job_id=blue["id"]) == [ids[1]]
        assert asset_ids(client, job_id=blue["id"].removeprefix("job_")) == [ids[1]]

        pages: list[str] = []
        params: dict[str, Any] = {"limit": 1}
        while True:
            page = client.get("/v1/assets", params=params).json()
            pages += [asset["id"] for asset in page["assets"]]
            if not page["has_more"]:
                assert page["cursor"] is None
                break
            params["cursor"] = page["cursor"]
        assert pages == sorted(ids, reverse=True)

        for bad in (
            {"limit": 0},
            {"limit": 101},
            {"cursor": "!!"},
            {"tag": "no-colon"},
            {"job_id": "job_123"},
        ):
            assert_error(client.get("/v1/assets", params=bad), 400, "invalid_request")


def test_an_asset_has_its_files_metadata_and_a_working_link(
    server: ServerProcess, account: dict[str, str]
) -> None:
    with server.client(account["api_key"]) as client:
        job = run(client, "metadata", project="apollo")
        output = job["result"]["outputs"][0]
        answer = client.get(f"/v1/assets/{output['asset_id']}")
    assert answer.status_code == 200
    asset = answer.json()
    assert asset["object"] == "asset"
    assert asset["id"] == output["asset_id"]
    assert asset["job_id"] == job["id"]
    assert (asset["model"], asset["modality"], asset["position"]) == ("echo", "image", 0)
    assert asset["tags"] == [{"key": "project", "value": "apollo"}]
    for field in ("content_type", "bytes", "width", "height", "duration_sec"):
        assert asset[field] == output[field], field
    assert asset["url"] == output["url"]  # same link within the hour
    assert asset["url_expires_at"] == output["expires_at"]
    assert asset["expired"] is False and asset["deleted_at"] is None
    assert asset["expires_at"] > asset["created_at"]
    with httpx.Client(timeout=30) as anonymous:
        file = anonymous.get(asset["url"])
    assert file.status_code == 200
    assert Image.open(io.BytesIO(file.content)).size == (asset["width"], asset["height"])


def test_deleting_an_asset_expires_it_in_the_job_record(
    server: ServerProcess, account: dict[str, str]
) -> None:
    with server.client(account["api_key"]) as client:
        job = run(client, "short-lived")
        asset_id = job["result"]["outputs"][0]["asset_id"]
        before = client.get(f"/v1/jobs/{job['id']}")
        etag = before.headers["etag"]
        assert (
            client.get(f"/v1/jobs/{job['id']}", headers={"If-None-Match": etag}).status_code == 304
        )

        deleted = client.delete(f"/v1/assets/{asset_id}")
        assert deleted.status_code == 200
        asset = deleted.json()
        assert asset["expired"] is True
        assert asset["url"] is None and asset["url_expires_at"] is None
        assert asset["deleted_at"] is not None

        after = client.get(f"/v1/jobs/{job['id']}", headers={"If-None-Match": etag})
        assert after.status_code == 200  # the record changed, so did its ETag
        assert after.headers["etag"] != etag
        record = after.json()
        assert record["result"]["url"] is None
        assert record["result"]["outputs"][0]["expired"] is True
        assert record["result"]["outputs"][0]["url"] is None
        assert record["asset_ids"] == [asset_id]

        assert client.delete(f"/v1/assets/{asset_id}").json() == asset  # idempotent
        assert client.get(f"/v1/assets/{asset_id}").json() == asset
        assert client.get(f"/v1/jobs/{job['id']}").headers["etag"] == after.headers["etag"]
    with httpx.Client(timeout=30) as anonymous:
        assert_error(anonymous.get(job["result"]["url"]), 404, "not_found")


def test_another_accounts_assets_are_404(server: ServerProcess) -> None:
    owner = server.create_account("owner")
    stranger = server.create_account("stranger")
    with server.client(owner["api_key"]) as client:
        job = run(client, "private")
    asset_id = job["result"]["outputs"][0]["asset_id"]
    with server.client(stranger["api_key"]) as client:
        assert_error(client.get(f"/v1/assets/{asset_id}"), 404, "not_found")
        assert_error(client.delete(f"/v1/assets/{asset_id}"), 404, "not_found")
        assert asset_ids(client) == []
        assert asset_ids(client, job_id=job["id"]) == []
        assert_error(client.get("/v1/assets/out_not-an-id"), 404, "not_found")
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        assert_error(anonymous.get("/v1/assets"), 401, "unauthorized")
    with server.client(owner["api_key"]) as client:
        assert client.get(f"/v1/assets/{asset_id}").json()["expired"] is False
