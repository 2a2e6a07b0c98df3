"""The `gengate` commands for API users, on top of the SDK: `submit`, `jobs ls|show|cancel`
and `wait`. They talk to a running server over HTTP (`--base-url`, `--api-key`, or
`GENGATE_BASE_URL` and `GENGATE_API_KEY`) and never open the database.

With `--json` a command prints exactly one line of JSON on stdout: the job record (a list
of them for `jobs ls`), or the error in the API's error shape. Exit codes:

    0  done (for `wait`: the job succeeded or partly succeeded)
    1  the job failed or was cancelled (`wait`, `submit --wait`)
    2  usage error (a bad option, no API key)
    3  the API refused the request or could not be reached
    4  `--timeout` passed before the job finished
  130  interrupted (Ctrl-C); the job itself goes on
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import anyio
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from gengate.client import (
    APIConnectionError,
    APIResponseError,
    APIStatusError,
    AsyncClient,
    AsyncJob,
    JobRecord,
    MissingAPIKeyError,
    NotFoundError,
    WaitTimeoutError,
)

T = TypeVar("T")

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_API_ERROR = 3
EXIT_TIMEOUT = 4
EXIT_INTERRUPTED = 130  # as shells report a command stopped by Ctrl-C
# How long one polling step waits before the progress display is updated.
POLL_STEP_S = 2.0

jobs_app = typer.Typer(help="List, show and cancel jobs (over the HTTP API).", no_args_is_help=True)

ApiKeyOption = Annotated[
    str | None,
    typer.Option("--api-key", envvar="GENGATE_API_KEY", show_envvar=True, help="API key."),
]
BaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--base-url",
        envvar="GENGATE_BASE_URL",
        show_envvar=True,
        help="The server (default http://127.0.0.1:8000).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one line of JSON.")]
TimeoutOption = Annotated[
    float | None,
    typer.Option("--timeout", min=0, help="Give up after this many seconds (exit code 4)."),
]
TagOption = Annotated[
    list[str] | None, typer.Option("--tag", help="key:value (repeatable).", show_default=False)
]


def register(app: typer.Typer) -> None:
    """Add the client commands to the `gengate` command."""
    app.command("submit")(submit)
    app.command("wait")(wait)
    app.add_typer(jobs_app, name="jobs")


# -- plumbing ---------------------------------------------------------------------------------


def _print_json(payload: Any) -> None:
    typer.echo(json.dumps(payload, separators=(",", ":")))


def _call_api(
    api_key: str | None,
    base_url: str | None,
    as_json: bool,
    action: Callable[[AsyncClient], Awaitable[T]],
) -> T:
    """Run `action` with a client; SDK errors become a message and an exit code."""

    async def main() -> T:
        async with AsyncClient(api_key, base_url) as client:
            return await action(client)

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except MissingAPIKeyError as exc:
        typer.echo(f"error: {exc.message} (or use --api-key)", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    except APIStatusError as exc:
        if as_json:
            _print_json(exc.to_dict())
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_API_ERROR) from None
    except (APIConnectionError, APIResponseError) as exc:
        if as_json:
            code = "connection_error" if isinstance(exc, APIConnectionError) else "bad_response"
            _print_json(
                {
                    "error": code,
                    "message": exc.message,
                    "details": {},
                    "request_id": None,
                    "status_code": None,
                }
            )
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(EXIT_API_ERROR) from None


def parse_inputs(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs; a value that parses as JSON is that JSON, else the string."""
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {pair!r}", param_hint="--input")
        try:
            parsed[key] = json.loads(raw)
        except ValueError:
            parsed[key] = raw
    return parsed


def parse_tags(values: list[str] | None) -> dict[str, str] | None:
    if not values:
        return None
    tags: dict[str, str] = {}
    for value in values:
        key, sep, tag_value = value.partition(":")
        if not sep or not key:
            raise typer.BadParameter(f"expected key:value, got {value!r}", param_hint="--tag")
        tags[key] = tag_value
    return tags


def summary(job: JobRecord) -> str:
    """One human line about a job."""
    parts = [job.id, job.status, job.model]
    if not job.is_terminal:
        parts.append(f"{job.progress}%")
    if job.status in ("succeeded", "partial"):
        parts.append(f"cost {job.cost.credits:g} credits")
    if job.error is not None:
        parts.append(f"{job.error.code}: {job.error.message}")
    if job.url:
        parts.append(job.url)
    return "  ".join(parts)


def _show(job: JobRecord, as_json: bool) -> None:
    if as_json:
        _print_json(job.to_dict())
    else:
        typer.echo(summary(job))


def _exit_code(job: JobRecord) -> int:
    return EXIT_JOB_FAILED if job.status in ("failed", "cancelled") else EXIT_OK


# -- following a job --------------------------------------------------------------------------


class ProgressView:
    """Shows a job's progress on stderr: a rich progress bar on a terminal, one plain
    line per change otherwise (logs, pipes), nothing with `--json`."""

    def __init__(self, quiet: bool) -> None:
        self.console = Console(stderr=True)
        self.quiet = quiet
        self._bar: Progress | None = None
        self._task: Any = None
        self._last: tuple[str, int, int | None] | None = None

    def __enter__(self) -> ProgressView:
        if not self.quiet and self.console.is_terminal:
            self._bar = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task("", total=100)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def note(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def show(self, job: JobRecord) -> None:
        state = (job.status, job.progress, job.scenes_completed)
        if self.quiet or state == self._last:
            return
        self._last = state
        scenes = ""
        if job.scenes_total:
            scenes = f" scenes {job.scenes_completed or 0}/{job.scenes_total}"
        if self._bar is not None:
            done = 100 if job.status == "succeeded" else job.progress
            self._bar.update(self._task, completed=done, description=f"{job.status}{scenes}")
        else:
            self.note(f"{job.id} {job.status} {job.progress}%{scenes}")


async def follow(job: AsyncJob, view: ProgressView) -> AsyncJob:
    """The job once finished, shown as it goes: from its event stream, or by polling when
    the stream is unavailable (an older server, a proxy that does not pass it)."""
    view.show(job)
    if job.is_terminal:
        return job
    try:
        async for event in job.events():
            job = event.job
            view.show(job)
        if job.is_terminal:
            return job
    except (NotFoundError, APIResponseError, APIConnectionError) as exc:
        view.note(f"event stream unavailable ({exc.message}); polling")
    while not job.is_terminal:
        try:
            job = await job.wait(timeout=POLL_STEP_S)
        except WaitTimeoutError as pending:
            assert isinstance(pending.job, AsyncJob)
            job = pending.job
        view.show(job)
    return job


async def _follow_until(
    client: AsyncClient, job: AsyncJob, limit_s: float | None, view: ProgressView
) -> AsyncJob:
    with anyio.move_on_after(math.inf if limit_s is None else limit_s):
        return await follow(job, view)
    # Out of time: the latest record says where the job stands.
    latest = await client.jobs.get(job.id)
    raise WaitTimeoutError(job=latest, timeout=limit_s or 0.0)


def _finish(job: JobRecord | None, timeout_error: WaitTimeoutError | None, as_json: bool) -> None:
    if timeout_error is not None:
        _show(timeout_error.job, as_json)
        typer.echo(f"error: {timeout_error.message}", err=True)
        raise typer.Exit(EXIT_TIMEOUT)
    assert job is not None
    _show(job, as_json)
    code = _exit_code(job)
    if code != EXIT_OK:
        raise typer.Exit(code)


async def _wait_outcome(
    client: AsyncClient, job: AsyncJob, limit_s: float | None, as_json: bool
) -> tuple[AsyncJob | None, WaitTimeoutError | None]:
    start = time.monotonic()
    with ProgressView(quiet=as_json) as view:
        try:
            done = await _follow_until(client, job, limit_s, view)
        except WaitTimeoutError as exc:
            return None, exc
    view.note(f"finished in {time.monotonic() - start:.1f} s")
    return done, None


# -- commands ---------------------------------------------------------------------------------


def submit(
    model: Annotated[str, typer.Argument(help="Model id, e.g. echo or local-image.")],
    inputs: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            "-i",
            help="Model input as key=value (repeatable); values are JSON when they parse.",
            show_default=False,
        ),
    ] = None,
    tag: TagOption = None,
    priority: Annotated[int | None, typer.Option(help="-10 … 10; higher runs first.")] = None,
    webhook_url: Annotated[str | None, typer.Option(help="Called when the job ends.")] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Reuse to retry safely (one is made if absent).")
    ] = None,
    wait_for_it: Annotated[
        bool, typer.Option("--wait", help="Wait for the job, showing its progress.")
    ] = False,
    timeout: TimeoutOption = None,
    as_json: JsonOption = False,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
) -> None:
    """Submit a job to a model; with --wait, follow it to the end."""
    model_input = parse_inputs(inputs or [])
    tags = parse_tags(tag)

    async def action(client: AsyncClient) -> tuple[AsyncJob | None, WaitTimeoutError | None]:
        job = await client.run(
            model,
            model_input,
            sync=False,
            tags=tags,
            priority=priority,
            webhook_url=webhook_url,
            idempotency_key=idempotency_key,
        )
        if not wait_for_it:
            return job, None
        if not as_json:
            typer.echo(f"submitted {job.id}", err=True)
        return await _wait_outcome(client, job, timeout, as_json)

    job, timed_out = _call_api(api_key, base_url, as_json, action)
    if not wait_for_it:
        assert job is not None
        _show(job, as_json)
        return
    _finish(job, timed_out, as_json)


def wait(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job id.")],
    timeout: TimeoutOption = None,
    as_json: JsonOption = False,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
) -> None:
    """Wait for a job to finish, showing its progress (exit 1: failed or cancelled)."""

    async def action(client: AsyncClient) -> tuple[AsyncJob | None, WaitTimeoutError | None]:
        return await _wait_outcome(client, await client.jobs.get(job_id), timeout, as_json)

    job, timed_out = _call_api(api_key, base_url, as_json, action)
    _finish(job, timed_out, as_json)


@jobs_app.command("ls")
def jobs_ls(
    status: Annotated[str | None, typer.Option(help="queued, running, succeeded, …")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model's jobs.")] = None,
    modality: Annotated[str | None, typer.Option(help="image, video, music, …")] = None,
    tag: TagOption = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many jobs.")] = 20,
    as_json: JsonOption = False,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
) -> None:
    """List jobs, newest first."""
    tags = parse_tags(tag)

    async def action(client: AsyncClient) -> list[AsyncJob]:
        found: list[AsyncJob] = []
        pages = client.jobs.list(
            status=status, model=model, modality=modality, tags=tags, limit=min(limit, 100)
        )
        async for job in pages:
            found.append(job)
            if len(found) >= limit:
                break
        return found

    found = _call_api(api_key, base_url, as_json, action)
    if as_json:
        _print_json({"jobs": [job.to_dict() for job in found]})
        return
    for job in found:
        created = job.created_at.strftime("%Y-%m-%d %H:%M:%S") if job.created_at else "-"
        typer.echo(
            f"{job.id}  {job.status:<9}  {job.model:<24}  {job.progress:>3}%  "
            f"{job.cost.credits:>8g} cr  {created}"
        )
    if not found:
        typer.echo("no jobs", err=True)


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job id.")],
    as_json: JsonOption = False,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
) -> None:
    """Show a job's record."""

    async def action(client: AsyncClient) -> AsyncJob:
        return await client.jobs.get(job_id)

    job = _call_api(api_key, base_url, as_json, action)
    if as_json:
        _print_json(job.to_dict())
    else:
        typer.echo(json.dumps(job.to_dict(), indent=2))


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job id.")],
    as_json: JsonOption = False,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = None,
) -> None:
    """Cancel a queued or running job (nothing is charged)."""

    async def action(client: AsyncClient) -> AsyncJob:
        return await client.jobs.cancel(job_id)

    job = _call_api(api_key, base_url, as_json, action)
    _show(job, as_json)
