"""Media inputs over real HTTP: a picture uploaded with `POST /v1/uploads` is restyled by
`local-image` through its `image_url`; a URL on a private address is refused at submit
in the error shape; with `GENGATE_MEDIA_ALLOW_PRIVATE=1` the gateway fetches a picture
from a real server on 127.0.0.1, and a non-image or oversize file fails the job with
`invalid_input`, uncharged. Also the 3D and story endpoints, end to end."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import trimesh
from PIL import Image

from tests.e2e.server import ServerProcess, assert_error, start_server, wait_for_job
from tests.integration.test_media_restyle import Route, media_server, noise_png, picture

SIZE = {"width": 160, "height": 120}
PROMPT = "a calm blue ocean at night"
MEDIA_LIMIT = 50_000


@pytest.fixture(scope="module")
def server(shared_server: ServerProcess) -> ServerProcess:
    """The session's default-config server: private media URLs are refused there."""
    return shared_server


@pytest.fixture(scope="module")
def private_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose operator lets media URLs reach 127.0.0.1, with a small limit."""
    process = start_server(
        tmp_path_factory.mktemp("media-private"),
        settings={"media_max_bytes": MEDIA_LIMIT},
        env={"GENGATE_MEDIA_ALLOW_PRIVATE": "1"},
    )
    try:
        yield process
    finally:
        process.stop()


def download(url: str) -> bytes:
    with httpx.Client(timeout=30) as client:  # no key: the link's signature authorises
        answer = client.get(url)
    assert answer.status_code == 200, answer.text
    return answer.content


def generate(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.post("/v1/images/generations", json=body)
    assert answer.status_code == 202, answer.text
    return wait_for_job(client, answer.json()["id"], timeout_s=60)


def pixels_of(job: dict[str, Any]) -> Any:
    assert job["status"] == "succeeded", job
    output = job["result"]["outputs"][0]
    assert (output["content_type"], output["width"], output["height"]) == ("image/png", 160, 120)
    image = Image.open(io.BytesIO(download(output["url"])))
    assert image.size == (160, 120)
    return np.asarray(image.convert("RGB")).astype(int)


def test_an_uploaded_picture_is_restyled(server: ServerProcess, account: dict[str, str]) -> None:
    with server.client(account["api_key"]) as client:
        uploaded = client.post(
            "/v1/uploads",
            files={"file": ("photo.jpg", picture("circle", fmt="JPEG"), "image/jpeg")},
        )
        assert uploaded.status_code == 201, uploaded.text
        upload_url = uploaded.json()["url"]
        restyled = generate(client, {"prompt": PROMPT, "seed": 3, **SIZE, "image_url": upload_url})
        plain = generate(client, {"prompt": PROMPT, "seed": 3, **SIZE})
        other = client.post(
            "/v1/uploads", files={"file": ("bars.png", picture("bars"), "image/png")}
        ).json()["url"]
        from_other = generate(client, {"prompt": PROMPT, "seed": 3, **SIZE, "image_url": other})
    assert restyled["input"]["image_url"] == upload_url
    assert restyled["cost"]["credits"] == 1.0
    first, plain_pixels, other_pixels = pixels_of(restyled), pixels_of(plain), pixels_of(from_other)
    # Not the plain picture of the same prompt and seed, and not blind to the input.
    assert np.abs(first - plain_pixels).mean() > 10
    assert np.abs(first - other_pixels).mean() > 10


def test_private_urls_are_refused_at_submit(server: ServerProcess, account: dict[str, str]) -> None:
    with server.client(account["api_key"]) as client:
        with media_server({"/in.png": Route(body=picture("circle"))}) as media:
            answer = client.post(
                "/v1/images/generations",
                json={"prompt": PROMPT, **SIZE, "image_url": media.url("/in.png")},
            )
            assert media.paths() == []  # nothing was fetched
        body = assert_error(answer, 422, "invalid_input")
        assert body["details"]["field"] == "image_url"
        assert "not public" in body["message"]
        assert client.get("/v1/jobs").json()["jobs"] == []
        account_now = client.get("/v1/account").json()
    assert account_now["reserved_micro"] == 0


def test_an_operator_may_allow_private_media(private_server: ServerProcess) -> None:
    account = private_server.create_account()
    routes = {
        "/in.jpg": Route(body=picture("bars", fmt="JPEG")),
        "/page.html": Route(body=b"<!doctype html><p>no picture here</p>"),
        "/big.png": Route(body=noise_png(160)),
    }
    with private_server.client(account["api_key"]) as client, media_server(routes) as media:
        fetched = generate(client, {"prompt": PROMPT, **SIZE, "image_url": media.url("/in.jpg")})
        pixels_of(fetched)
        failures = {
            path: generate(client, {"prompt": PROMPT, **SIZE, "image_url": media.url(path)})
            for path in ("/page.html", "/big.png")
        }
        balance = client.get("/v1/account").json()
    assert "/in.jpg" in media.paths()
    for path, job in failures.items():
        assert job["status"] == "failed", job
        assert job["error"]["code"] == "invalid_input", job
        assert job["cost"]["cost_micro"] == 0
        assert job["result"] is None, path
    assert "not of an accepted type" in failures["/page.html"]["error"]["message"]
    assert f"larger than {MEDIA_LIMIT} bytes" in failures["/big.png"]["error"]["message"]
    # Only the one restyled picture was charged.
    assert balance["reserved_micro"] == 0
    assert balance["balance_micro"] == 1000 * 10_000 - 10_000


def test_a_mesh_and_a_story_over_http(server: ServerProcess, account: dict[str, str]) -> None:
    with server.client(account["api_key"]) as client:
        mesh = client.post("/v1/3d/generations", json={"prompt": "a blue vase", "detail": 2})
        story = client.post(
            "/v1/stories",
            json={"prompt": "A ship sails. A storm comes.", "scenes": 2, "width": 64, "height": 64},
        )
        assert (mesh.status_code, story.status_code) == (202, 202), (mesh.text, story.text)
        assert (mesh.json()["model"], story.json()["model"]) == ("local-3d", "local-story")
        mesh_job = wait_for_job(client, mesh.json()["id"], timeout_s=60)
        story_job = wait_for_job(client, story.json()["id"], timeout_s=60)
    assert mesh_job["status"] == "succeeded", mesh_job
    assert mesh_job["cost"]["credits"] == 2.0
    glb = download(mesh_job["result"]["url"])
    loaded = trimesh.load(io.BytesIO(glb), file_type="glb")
    assert isinstance(loaded, trimesh.Scene) and len(loaded.geometry) >= 1
    assert story_job["status"] == "succeeded", story_job
    assert story_job["cost"]["credits"] == 2.0
    assert [o["content_type"] for o in story_job["result"]["outputs"]] == ["image/png"] * 2
    for output in story_job["result"]["outputs"]:
        assert Image.open(io.BytesIO(download(output["url"]))).size == (64, 64)
