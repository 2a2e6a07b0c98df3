"""The `gengate` command line: run the service and administer accounts and keys.

With `--json`, a command prints exactly one line of JSON on stdout; logs go to stderr.
Server modules are imported inside the commands that need them, so the API client's
commands (`submit`, `jobs`, `wait`) start in a fraction of the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from gengate.cli_client import register as register_client_commands

if TYPE_CHECKING:
    from gengate.config import Settings
    from gengate.services import accounts as account_service
    from gengate.services.gateway import Gateway
    from gengate.store.database import Database

T = TypeVar("T")
logger = logging.getLogger("gengate.cli")

app = typer.Typer(
    help="gengate: a gateway for asynchronous AI-generation jobs.", no_args_is_help=True
)
accounts_app = typer.Typer(help="Create and manage accounts.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")
app.add_typer(keys_app, name="keys")

ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="TOML config file (default: ./gengate.toml).")
]
DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="Where the database and files live.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one line of JSON.")]


def _settings(config: Path | None, data_dir: Path | None, **overrides: Any) -> Settings:
    from gengate.config import load_settings
    from gengate.logs import configure_logging

    try:
        settings = load_settings(config, data_dir=data_dir, **overrides)
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log_level)
    return settings


def _run_db(settings: Settings, action: Callable[[Database], Awaitable[T]]) -> T:
    from gengate.domain.errors import GengateError
    from gengate.store.database import Database
    from gengate.store.migrate import upgrade_to_head

    async def main() -> T:
        db = Database(settings.resolved_database_url)
        try:
            await upgrade_to_head(db)
            return await action(db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(main())
    except GengateError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None


def _emit(payload: Any, as_json: bool, human: str) -> None:
    typer.echo(json.dumps(payload, separators=(",", ":")) if as_json else human)


def _credits(value: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise typer.BadParameter(f"not a number: {value!r}") from None
    if not amount.is_finite():
        raise typer.BadParameter("credits must be finite")
    return amount


# -- running ------------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    no_workers: Annotated[
        bool, typer.Option("--no-workers", help="Serve the API only (cluster mode).")
    ] = False,
) -> None:
    """Run the HTTP API (and, unless --no-workers, the workers) in this process."""
    import uvicorn

    from gengate.api.app import create_app

    settings = _settings(config, data_dir, host=host, port=port)
    created = _run_db(settings, lambda db: _bootstrap_first_account(db, settings))
    url = f"http://{settings.host}:{settings.port}"
    typer.echo(f"gengate {'API' if no_workers else 'gateway'} on {url}  (docs: {url}/docs)")
    if created is not None:
        typer.echo(
            "A first account was created. Its API key is shown only once:\n\n"
            f"    export GENGATE_API_KEY={created.api_key}\n"
            f"    export GENGATE_BASE_URL={url}\n"
        )
    sys.stdout.flush()
    uvicorn.run(
        create_app(settings, run_workers=not no_workers),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 5,
    )


async def _bootstrap_first_account(
    db: Database, settings: Settings
) -> account_service.CreatedAccount | None:
    from gengate.services import accounts as account_service
    from gengate.store.types import utcnow

    if await account_service.has_accounts(db):
        return None
    return await account_service.create_account(db, "default", settings.bootstrap_credits, utcnow())


@app.command()
def worker(
    models: Annotated[
        str | None, typer.Option(help="Comma-separated model ids (default: all).")
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Jobs at once per model (default: per model).")
    ] = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Run workers only: claim and run jobs of the given models until SIGTERM/SIGINT."""
    settings = _settings(config, data_dir)
    wanted = [m.strip() for m in models.split(",") if m.strip()] if models else None
    asyncio.run(_run_worker(settings, wanted, concurrency))


async def _run_worker(
    settings: Settings, wanted: list[str] | None, concurrency: int | None
) -> None:
    from gengate.domain.errors import GengateError
    from gengate.webhooks.delivery import DeliveryLoop
    from gengate.worker.maintenance import Maintenance
    from gengate.worker.runtime import WorkerRuntime

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if settings.public_url is None:
        logger.warning(
            "public_url is not set: links in the webhooks this worker sends will name http://%s:%s",
            settings.host,
            settings.port,
        )
    gw = await _open_when_reachable(settings, stop)
    if gw is None:
        return
    try:
        selected = [gw.catalog.get(m) for m in wanted] if wanted else list(gw.catalog)
    except GengateError as exc:
        await gw.close()
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    runtime = WorkerRuntime(gw, selected, concurrency=concurrency)
    maintenance = Maintenance(gw)
    deliveries = DeliveryLoop(gw) if settings.webhooks_deliver else None
    try:
        await runtime.start()
        maintenance.start()
        if deliveries is not None:
            deliveries.start()
        await stop.wait()
    finally:
        await runtime.stop()
        if deliveries is not None:
            await deliveries.stop()
        await maintenance.stop()
        await gw.close()


async def _open_when_reachable(settings: Settings, stop: asyncio.Event) -> Gateway | None:
    """Open the gateway, waiting out a database that cannot be reached yet: a worker
    started while the database restarts keeps trying instead of exiting. None when
    told to stop first."""
    from sqlalchemy.exc import DBAPIError

    from gengate.services.gateway import Gateway

    delay = 0.5
    while not stop.is_set():
        try:
            return await Gateway.open(settings)
        except (OSError, DBAPIError) as exc:
            logger.warning("database not reachable, retrying in %.1f s: %s", delay, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 10.0)
    return None


@app.command()
def migrate(data_dir: DataDirOption = None, config: ConfigOption = None) -> None:
    """Bring the database schema up to date."""
    settings = _settings(config, data_dir)

    async def nothing(db: Database) -> None:
        return None

    _run_db(settings, nothing)
    typer.echo("database schema is up to date", err=True)


# -- accounts -----------------------------------------------------------------------------


@accounts_app.command("create")
def accounts_create(
    name: str,
    credits: Annotated[
        str, typer.Option("--credits", help="Initial credits (1 credit = 1 cent).")
    ] = "0",
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Create an account with an API key and a webhook secret."""
    from gengate.services import accounts as account_service
    from gengate.store.types import utcnow

    settings = _settings(config, data_dir)
    amount = _credits(credits)
    if amount < 0:
        raise typer.BadParameter("initial credits cannot be negative")
    created = _run_db(
        settings, lambda db: account_service.create_account(db, name, amount, utcnow())
    )
    payload = {
        "account_id": created.account_id,
        "key_id": created.key_id,
        "api_key": created.api_key,
        "webhook_secret": created.webhook_secret,
    }
    _emit(
        payload,
        as_json,
        f"account {created.account_id}\napi key {created.api_key}\n"
        f"webhook secret {created.webhook_secret}",
    )


@accounts_app.command("list")
def accounts_list(
    as_json: JsonOption = False, data_dir: DataDirOption = None, config: ConfigOption = None
) -> None:
    """List accounts with their balances."""
    from gengate.services import accounts as account_service

    settings = _settings(config, data_dir)
    rows = _run_db(settings, account_service.list_accounts)
    human = "\n".join(
        f"{r['id']}  {r['name']:<20} credits={r['credits']:.2f} "
        f"reserved_micro={r['reserved_micro']}"
        for r in rows
    )
    _emit({"accounts": rows}, as_json, human or "no accounts")


@accounts_app.command("credit")
def accounts_credit(
    account_id: str,
    credits: Annotated[str, typer.Option("--credits", help="Credits to add (negative to remove).")],
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Add credits to an account (1 credit = 1 cent)."""
    from gengate.services import accounts as account_service
    from gengate.store.types import utcnow

    settings = _settings(config, data_dir)
    amount = _credits(credits)
    result = _run_db(
        settings, lambda db: account_service.credit_account(db, account_id, amount, utcnow())
    )
    _emit(result, as_json, f"{account_id}: {result['credits']:.2f} credits")


@accounts_app.command("rotate-webhook-secret")
def accounts_rotate_webhook_secret(
    account_id: str,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Give an account a new webhook secret; the old one keeps signing webhooks too for
    `webhooks_secret_overlap_s` (a second `v1,` signature)."""
    from gengate.services import accounts as account_service
    from gengate.store.types import utcnow

    settings = _settings(config, data_dir)
    result = _run_db(
        settings,
        lambda db: account_service.rotate_webhook_secret(
            db, account_id, utcnow(), overlap_s=settings.webhooks_secret_overlap_s
        ),
    )
    _emit(
        result,
        as_json,
        f"webhook secret {result['webhook_secret']}\n"
        f"the previous secret also signs until {result['previous_secret_expires_at']}",
    )


# -- keys -----------------------------------------------------------------------------------


@keys_app.command("create")
def keys_create(
    account_id: str,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Create another API key for an account."""
    from gengate.services import accounts as account_service
    from gengate.store.types import utcnow

    settings = _settings(config, data_dir)
    created = _run_db(settings, lambda db: account_service.create_key(db, account_id, utcnow()))
    _emit(
        {"key_id": created.key_id, "api_key": created.api_key},
        as_json,
        f"key {created.key_id}\napi key {created.api_key}",
    )


@keys_app.command("list")
def keys_list(
    account_id: str,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """List an account's keys (never their secrets)."""
    from gengate.services import accounts as account_service

    settings = _settings(config, data_dir)
    keys = _run_db(settings, lambda db: account_service.list_keys(db, account_id))
    human = "\n".join(
        f"{k['key_id']}  {k['prefix']}…  {'revoked' if k['revoked'] else 'active'}" for k in keys
    )
    _emit({"keys": keys}, as_json, human or "no keys")


@keys_app.command("revoke")
def keys_revoke(
    key_id: str,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Revoke a key: requests with it answer 401 from now on."""
    from gengate.services import accounts as account_service
    from gengate.store.types import utcnow

    settings = _settings(config, data_dir)
    _run_db(settings, lambda db: account_service.revoke_key(db, key_id, utcnow()))
    _emit({"key_id": key_id, "revoked": True}, as_json, f"revoked {key_id}")


register_client_commands(app)  # submit, jobs, wait: the API user's commands


def main() -> None:
    app()
