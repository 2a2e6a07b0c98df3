"""The shortest path through a real server: submit, finish, fetch the file."""

from __future__ import annotations

import io

from PIL import Image

from tests.e2e.server import ServerProcess


def test_submit_run_and_download(server: ServerProcess, account: dict[str, str]) -> None:
    with server.client(account["api_key"]) as client:
        answer = client.post("/v1/models/echo/run", json={"input": {"prompt": "hello"}})
        assert answer.status_code == 200, answer.text
        job = answer.json()
        assert job["status"] == "succeeded"
        assert answer.headers["x-request-id"].startswith("req_")
        image = client.get(job["result"]["url"])
        assert image.status_code == 200, (image.text, job)
        assert Image.open(io.BytesIO(image.content)).size == (64, 64)
