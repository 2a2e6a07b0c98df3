"""The gateway's shared pieces, opened once per process and handed to every use-case."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from gengate.config import Settings
from gengate.metrics import Metrics
from gengate.outbound.address_guard import Resolver, system_resolver
from gengate.providers.registry import ModelCatalog, build_catalog
from gengate.services.notifications import Notifier
from gengate.storage.backends import open_blob_store
from gengate.storage.base import BlobStore
from gengate.storage.signing import LinkSigner, new_secret_key
from gengate.store import system
from gengate.store.database import Database
from gengate.store.migrate import upgrade_to_head
from gengate.store.pg_relay import PostgresRelay
from gengate.store.types import utcnow

SECRET_KEY_SETTING = "link_secret_key"


@dataclass
class Gateway:
    settings: Settings
    db: Database
    catalog: ModelCatalog
    storage: BlobStore
    signer: LinkSigner
    notifier: Notifier = field(default_factory=Notifier)
    metrics: Metrics = field(default_factory=Metrics)
    resolver: Resolver = system_resolver
    clock: Callable[[], datetime] = utcnow

    relay: PostgresRelay | None = None

    @classmethod
    async def open(
        cls, settings: Settings, *, migrate: bool = True, metrics: Metrics | None = None
    ) -> Gateway:
        """Connect, bring the schema up to date, and load the signing secret."""
        db = Database(settings.resolved_database_url)
        try:
            if migrate:
                await upgrade_to_head(db)
            storage = open_blob_store(settings)
            signer = LinkSigner(await load_secret_key(db, settings), presigner=storage)
            gateway = cls(
                settings=settings,
                db=db,
                catalog=build_catalog(settings),
                storage=storage,
                signer=signer,
                metrics=metrics or Metrics(),
            )
            if not db.is_sqlite:
                gateway.relay = PostgresRelay(db.sync_url, gateway.notifier)
                await gateway.relay.start()
                gateway.notifier.attach_relay(gateway.relay)
            return gateway
        except BaseException:
            await db.dispose()
            raise

    async def close(self) -> None:
        if self.relay is not None:
            self.notifier.attach_relay(None)
            await self.relay.stop()
        await self.db.dispose()


async def load_secret_key(db: Database, settings: Settings) -> str:
    """`GENGATE_SECRET_KEY`, or the key generated on first start and kept in the database
    (so links survive restarts and verify on every replica)."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    async with db.transaction() as conn:
        return await system.get_or_create(conn, SECRET_KEY_SETTING, new_secret_key())
