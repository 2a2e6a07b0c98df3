"""The dashboard (`/dashboard`) in a real browser against a real server: Debian's
Chromium, headless, driven by Playwright (never a downloaded browser).

Signing in with a key, a job going from queued to succeeded in the table without a
reload, its image preview decoded by the browser, video and audio previews, a 3D
preview drawn by the GLB viewer, cancelling a long job from its page, the filters,
where the key goes (a header of the page's own requests; sessionStorage; never a URL),
and the page following the server through a restart. Plus the page's HTTP answers,
which need no browser.

Without Chromium these browser tests are skipped, except in CI (`CI` set), where a
missing browser is a failure: `make test` installs it there."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import ServerProcess, assert_error, start_server, wait_for_job

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("browser")]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
MODELS = {
    "echo": {"params": {"max_latency_ms": 60_000}},
    # One job at a time: a second job waits in the queue behind the first.
    "single": {"provider": "echo", "concurrency": 1, "params": {"max_latency_ms": 60_000}},
}
# Each wait is for something that takes a second or two here.
UI_TIMEOUT_MS = 15_000


def chromium_path() -> str | None:
    """Debian's Chromium, if it is installed (`make test` installs it)."""
    found = shutil.which(CHROMIUM) or shutil.which("chromium")
    return found if found and Path(found).is_file() else None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        if IN_CI:
            pytest.fail("Chromium is required in CI (apt-get install -y chromium)")
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = start_server(tmp_path_factory.mktemp("dashboard"), models=MODELS)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def account(server: ServerProcess) -> dict[str, str]:
    """A fresh account. Made in a thread: Playwright's sync API runs an event loop in
    this one, where `create_account`'s `asyncio.run` may not start another."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(server.create_account).result()


@pytest.fixture
def api(server: ServerProcess, account: dict[str, str]) -> Iterator[httpx.Client]:
    with server.client(account["api_key"]) as client:
        yield client


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-US")
    context.set_default_timeout(UI_TIMEOUT_MS)
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()


def submit(api: httpx.Client, model: str = "echo", **model_input: Any) -> str:
    body = {"input": {"prompt": "dashboard", **model_input}, "sync": False}
    answer = api.post(f"/v1/models/{model}/run", json=body)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def sign_in(page: Any, server: ServerProcess, api_key: str) -> None:
    """Open the dashboard, sign in, and wait until the live stream is open."""
    page.goto(f"{server.url}/dashboard")
    page.fill("#api-key", api_key)
    page.click("#sign-in-form button[type=submit]")
    page.wait_for_selector('#live[data-state="live"]')


def row(page: Any, job_id: str) -> Any:
    return page.locator(f'tr[data-job-id="{job_id}"]')


# -- the page over HTTP -----------------------------------------------------------------------


def test_the_page_and_its_files_are_served_with_a_strict_policy(server: ServerProcess) -> None:
    with server.client() as anonymous:
        page = anonymous.get("/dashboard")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert page.headers["x-content-type-options"] == "nosniff"
        again = anonymous.get("/dashboard", headers={"If-None-Match": page.headers["etag"]})
        assert again.status_code == 304
        for name, media_type in (
            ("dashboard.js", "text/javascript"),
            ("glb-viewer.js", "text/javascript"),
            ("dashboard.css", "text/css"),
            ("favicon.svg", "image/svg+xml"),
        ):
            answer = anonymous.get(f"/dashboard/{name}")
            assert answer.status_code == 200, name
            assert answer.headers["content-type"].startswith(media_type)
            assert f"dashboard/{name}" in page.text or name == "glb-viewer.js"
        assert_error(anonymous.get("/dashboard/secrets.txt"), 404, "not_found")
        assert_error(anonymous.get("/dashboard/..%2fpyproject.toml"), 404, "not_found")
        assert "/dashboard" not in anonymous.get("/openapi.json").json()["paths"]


# -- in the browser ---------------------------------------------------------------------------


def test_a_job_goes_from_queued_to_succeeded_live_with_its_preview(
    page: Any, server: ServerProcess, api: httpx.Client, account: dict[str, str]
) -> None:
    sign_in(page, server, account["api_key"])
    page.evaluate("window.__sameDocument = true")
    # Every status a row shows, in order, as the page shows it.
    page.evaluate(
        """() => {
            window.__statuses = {};
            new MutationObserver(() => {
                for (const row of document.querySelectorAll("tr[data-job-id]")) {
                    const seen = (window.__statuses[row.dataset.jobId] ??= []);
                    if (seen.at(-1) !== row.dataset.status) seen.push(row.dataset.status);
                }
            }).observe(document.getElementById("jobs-body"),
                       {subtree: true, childList: true, attributes: true});
        }"""
    )
    blocker = submit(api, "single", latency_ms=1500)
    job_id = submit(api, "single", latency_ms=1500, progress_steps=3)

    row(page, job_id).locator('.status[data-status="succeeded"]').wait_for()
    statuses = page.evaluate(f"window.__statuses[{job_id!r}]")
    assert statuses[0] == "queued" and statuses[-1] == "succeeded", statuses
    assert "running" in statuses, statuses
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    assert row(page, blocker).get_attribute("data-status") == "succeeded"
    assert row(page, job_id).locator("td[data-col=cost]").inner_text() == "0.1 cr"

    row(page, job_id).click()
    page.wait_for_url(f"**/dashboard#/jobs/{job_id}")
    image = page.locator("#job-view .preview img")
    image.wait_for()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )
    # The browser decoded the real PNG: echo makes 64 by 64 images.
    assert image.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [64, 64]
    assert page.locator("#job-view .job-head .status").inner_text() == "succeeded"
    # The balance followed the charge: what the API says now, to the cent.
    available = api.get("/v1/account").json()["available_micro"] / 10_000
    page.wait_for_function(
        """credits => Math.abs(parseFloat(document.getElementById('balance-available')
            .textContent.replaceAll(',', '')) - credits) < 0.005""",
        arg=available,
    )


def test_cancelling_a_long_job_from_its_page(
    page: Any, server: ServerProcess, api: httpx.Client, account: dict[str, str]
) -> None:
    sign_in(page, server, account["api_key"])
    job_id = submit(api, latency_ms=60_000)
    row(page, job_id).locator('.status[data-status="running"]').wait_for()
    row(page, job_id).click()
    cancel = page.locator("#job-view button.danger")
    cancel.click()
    page.locator('#job-view .job-head .status[data-status="cancelled"]').wait_for()
    assert cancel.is_hidden()
    assert api.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
    page.click("a.back")
    row(page, job_id).locator('.status[data-status="cancelled"]').wait_for()


def test_the_filters_and_the_error_details(
    page: Any, server: ServerProcess, api: httpx.Client, account: dict[str, str]
) -> None:
    failed = submit(api, fail=True)
    done = submit(api, "single")
    wait_for_job(api, failed)
    wait_for_job(api, done)
    sign_in(page, server, account["api_key"])
    row(page, done).wait_for()

    page.select_option("#filter-status", "failed")
    row(page, done).wait_for(state="detached")
    assert page.locator("tr[data-job-id]").count() == 1
    row(page, failed).click()
    error = page.locator("#job-view .error-box")
    error.wait_for()
    assert error.inner_text().startswith("provider_error")

    page.click("a.back")
    page.select_option("#filter-status", "")
    page.select_option("#filter-model", "single")
    row(page, failed).wait_for(state="detached")
    assert page.locator("tr[data-job-id]").count() == 1
    assert row(page, done).is_visible()


def test_the_key_stays_in_the_tab_and_out_of_urls(
    page: Any, server: ServerProcess, api: httpx.Client, account: dict[str, str]
) -> None:
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    page.goto(f"{server.url}/dashboard")
    page.fill("#api-key", "gg_live_not-a-key")
    page.click("#sign-in-form button[type=submit]")
    refusal = page.locator("#sign-in-error")
    refusal.wait_for()
    assert "refused" in refusal.inner_text()

    sign_in(page, server, account["api_key"])
    job_id = submit(api)
    row(page, job_id).locator('.status[data-status="succeeded"]').wait_for()
    assert page.evaluate("sessionStorage.getItem('gengate.apiKey')") == account["api_key"]
    assert page.evaluate("localStorage.length") == 0
    assert urls and not [url for url in urls if account["api_key"] in url]
    assert any(url.endswith("/v1/events") for url in urls)

    # A reload keeps the tab signed in; signing out forgets the key.
    page.reload()
    page.wait_for_selector('#live[data-state="live"]')
    page.click("#sign-out")
    page.locator("#sign-in").wait_for()
    assert page.evaluate("sessionStorage.getItem('gengate.apiKey')") is None


def test_a_3d_output_is_drawn_by_the_glb_viewer(
    page: Any, server: ServerProcess, api: httpx.Client, account: dict[str, str]
) -> None:
    if "local-3d" not in {m["id"] for m in api.get("/v1/models").json()["models"]}:
        pytest.skip("this build has no local-3d model")
    answer = api.post(
        "/v1/models/local-3d/run", json={"input": {"prompt": "a red vase", "detail": 1}}
    )
    assert answer.status_code == 200 and answer.json()["status"] == "succeeded", answer.text
    job_id = answer.json()["id"]
    sign_in(page, server, account["api_key"])
    page.goto(f"{server.url}/dashboard#/jobs/{job_id}")
    canvas = page.locator('#job-view .preview[data-content-type="model/gltf-binary"] canvas')
    canvas.wait_for()
    page.wait_for_function("canvas => canvas.dataset.ready === 'true'", arg=canvas.element_handle())
    assert int(canvas.get_attribute("data-triangles") or 0) > 100
    # Pixels were drawn: the canvas is not one flat colour.
    drawn = canvas.evaluate(
        """canvas => {
            const gl = canvas.getContext("webgl2");
            const pixels = new Uint8Array(canvas.width * canvas.height * 4);
            gl.readPixels(0, 0, canvas.width, canvas.height, gl.RGBA, gl.UNSIGNED_BYTE, pixels);
            let opaque = 0;
            for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) opaque += 1;
            return opaque / (canvas.width * canvas.height);
        }"""
    )
    assert 0.02 < drawn < 0.95, drawn


def test_video_and_audio_previews_load_in_the_browser(
    page: Any, server: ServerProcess, api: httpx.Client, account: dict[str, str]
) -> None:
    jobs = {}
    for model, model_input in (
        ("local-video", {"prompt": "waves", "duration": 1, "width": 320, "height": 180}),
        ("local-voice", {"text": "Hello from the dashboard."}),
    ):
        answer = api.post(f"/v1/models/{model}/run", json={"input": model_input})
        assert answer.status_code == 200 and answer.json()["status"] == "succeeded", answer.text
        jobs[model] = answer.json()
    sign_in(page, server, account["api_key"])
    for model, tag in (("local-video", "video"), ("local-voice", "audio")):
        job = jobs[model]
        page.goto(f"{server.url}/dashboard#/jobs/{job['id']}")
        media = page.locator(f"#job-view .preview {tag}")
        media.wait_for()
        # The browser read the file's header: HAVE_METADATA, and the real duration.
        page.wait_for_function("media => media.readyState >= 1", arg=media.element_handle())
        duration = media.evaluate("media => media.duration")
        expected = job["result"]["outputs"][0]["duration_sec"]
        assert abs(duration - expected) < 0.2, (model, duration, expected)


def test_the_page_follows_the_server_through_a_restart(
    page: Any, server: ServerProcess, api: httpx.Client, account: dict[str, str]
) -> None:
    sign_in(page, server, account["api_key"])
    page.evaluate("window.__sameDocument = true")
    server.stop()
    page.wait_for_selector('#live[data-state="reconnecting"]')
    server.start()
    page.wait_for_selector('#live[data-state="live"]')
    job_id = submit(api)
    row(page, job_id).locator('.status[data-status="succeeded"]').wait_for()
    assert page.evaluate("window.__sameDocument") is True
