"""Hostile webhook URLs are refused at submit over HTTP with 422 in the error shape,
by a real server with private targets not allowed (the default)."""

from __future__ import annotations

import pytest

from tests.e2e.server import ServerProcess, assert_error

pytestmark = [pytest.mark.e2e]

HOSTILE_URLS = [
    "http://127.0.0.1/hook",  # loopback
    "http://127.8.9.10:8000/",  # the rest of 127/8
    "http://[::1]/hook",  # IPv6 loopback
    "http://10.0.0.1/hook",  # private
    "http://172.16.0.1/hook",
    "http://172.31.255.254/hook",
    "http://192.168.1.1/hook",
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://[fd00:ec2::254]/",  # IPv6 metadata (unique local)
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped loopback
    "http://[::ffff:a9fe:a9fe]/",  # IPv4-mapped metadata
    "http://0.0.0.0/hook",  # unspecified
    "http://[::]/hook",
    "http://100.64.0.1/hook",  # shared address space (CGNAT)
    "http://224.0.0.1/hook",  # multicast
    "http://[fe80::1]/hook",  # link-local
    "http://localhost:8000/hook",  # a name that resolves to loopback
    "http://2130706433/hook",  # 127.0.0.1 written as one number
    "http://0x7f000001/hook",  # ... and in hex
    "ftp://example.com/hook",  # not http(s)
    "file:///etc/passwd",
    "gopher://127.0.0.1:25/",
    "javascript:alert(1)",
    "http:///no-host",
]


@pytest.fixture(scope="module")
def server(shared_server: ServerProcess) -> ServerProcess:
    return shared_server


@pytest.fixture(scope="module")
def api_key(server: ServerProcess) -> str:
    return server.create_account("ssrf")["api_key"]


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_a_hostile_webhook_url_is_refused_at_submit(
    server: ServerProcess, api_key: str, url: str
) -> None:
    with server.client(api_key) as client:
        for path, body in (
            ("/v1/models/echo/run", {"input": {"prompt": "x"}, "webhook_url": url, "sync": False}),
            ("/v1/images/generations", {"model": "echo", "prompt": "x", "webhook_url": url}),
        ):
            error = assert_error(client.post(path, json=body), 422, "invalid_input")
            assert error["details"]["field"] == "webhook_url"
            assert "webhook_url" in error["message"]
        # Nothing was created or reserved for the refused submits.
        assert client.get("/v1/jobs").json()["jobs"] == []
        assert client.get("/v1/account").json()["reserved_micro"] == 0
