"""Regenerate docs/dashboard.png: a real screenshot of the dashboard.

Starts a `gengate serve` with the built-in models in a temporary folder, gives it an
account and a mix of jobs (finished, failed, cancelled, running, queued), signs in to
`/dashboard` in headless Chromium (Debian's, driven by Playwright, as the tests do) and
saves the jobs table while two videos render.

    .venv/bin/python scripts/screenshot_dashboard.py [--out docs/dashboard.png]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.e2e.server import start_server, wait_for_job  # noqa: E402
from tests.e2e.test_dashboard import CHROMIUM_ARGS, chromium_path, sign_in  # noqa: E402

MODELS = {
    # One video at a time, so that the second one waits in the queue.
    "local-video": {"concurrency": 1},
    "echo": {"params": {"max_latency_ms": 600_000}},
}
FINISHED = [
    ("local-image", {"prompt": "a lighthouse at dusk, teal and orange", "seed": 7}),
    ("local-3d", {"prompt": "a golden vase", "detail": 2}),
    ("local-voice", {"text": "Your render is ready."}),
    ("local-music", {"prompt": "calm morning piano", "duration": 3}),
    ("local-image", {"prompt": "autumn forest, warm light", "width": 768, "height": 512}),
    ("echo", {"prompt": "broken request", "fail": True}),
]


def submit(client: httpx.Client, model: str, model_input: dict[str, Any]) -> str:
    answer = client.post(f"/v1/models/{model}/run", json={"input": model_input, "sync": False})
    answer.raise_for_status()
    return str(answer.json()["id"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "dashboard.png")
    out: Path = parser.parse_args().out
    executable = chromium_path()
    if executable is None:
        sys.exit("Chromium is not installed (apt-get install -y chromium)")

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        server = start_server(Path(folder), models=MODELS)
        try:
            account = server.create_account("Studio demo", credits=2500)
            with server.client(account["api_key"]) as client:
                client.timeout = httpx.Timeout(120)
                for model, model_input in FINISHED:
                    wait_for_job(client, submit(client, model, model_input), timeout_s=120)
                cancelled = submit(client, "echo", {"prompt": "never mind", "latency_ms": 60_000})
                client.post(f"/v1/jobs/{cancelled}/cancel").raise_for_status()
                # Two videos: one renders (its progress bar moves), one waits its turn.
                first = submit(
                    client,
                    "local-video",
                    {"prompt": "neon city rain", "duration": 20, "width": 1280, "height": 720},
                )
                submit(client, "local-video", {"prompt": "ocean waves at sunrise", "duration": 4})
                wait_for_job(client, first, statuses={"running"}, timeout_s=60)

                with sync_playwright() as playwright:
                    browser = playwright.chromium.launch(
                        executable_path=executable, args=CHROMIUM_ARGS
                    )
                    page = browser.new_page(viewport={"width": 1280, "height": 720}, locale="en-US")
                    sign_in(page, server, account["api_key"])
                    page.locator(f'tr[data-job-id="{first}"]').wait_for()
                    # Let the running video show some progress (the page follows it live).
                    deadline = time.monotonic() + 60
                    while client.get(f"/v1/jobs/{first}").json()["progress"] < 30:
                        if time.monotonic() > deadline:
                            break
                        time.sleep(0.1)
                    page.mouse.move(0, 0)  # no row under the pointer, so none is highlighted
                    page.wait_for_timeout(300)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(out))
                    browser.close()
        finally:
            server.stop()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
