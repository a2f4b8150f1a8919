"""The record's schema version: Alembic migrations shipped in this package, applied by
``canhbao db upgrade``; the recorder refuses a database whose schema is older (or
newer) than its code, and says what to run."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class SchemaError(RuntimeError):
    """The database's schema is not the one this code writes; the message says why
    and what to run."""


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The newest migration this code knows: the schema it writes."""
    revision = ScriptDirectory.from_config(_config()).get_current_head()
    assert revision is not None
    return revision


def known(revision: str) -> bool:
    script = ScriptDirectory.from_config(_config())
    return any(s.revision == revision for s in script.walk_revisions())


def safe_url(url: str) -> str:
    """The database URL without its password, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current(engine: AsyncEngine) -> str | None:
    """The schema revision of the database; None when no migration ever ran."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> tuple[str | None, str | None]:
    """Apply the migrations up to ``revision``; (revision before, revision after)."""

    def run(connection: Connection) -> tuple[str | None, str | None]:
        before = _current(connection)
        command.upgrade(_config(connection), revision)
        return before, _current(connection)

    async with engine.begin() as conn:
        return await conn.run_sync(run)


async def downgrade(engine: AsyncEngine, revision: str) -> tuple[str | None, str | None]:
    """Undo migrations down to ``revision`` (``base``: an empty database)."""

    def run(connection: Connection) -> tuple[str | None, str | None]:
        before = _current(connection)
        command.downgrade(_config(connection), revision)
        return before, _current(connection)

    async with engine.begin() as conn:
        return await conn.run_sync(run)


def revisions() -> list[str]:
    """Every migration, oldest first."""
    script = ScriptDirectory.from_config(_config())
    return [s.revision for s in reversed(list(script.walk_revisions()))]


async def check(engine: AsyncEngine) -> None:
    """SchemaError unless the database is at this code's schema."""
    have = await current(engine)
    want = head()
    where = safe_url(str(engine.url.render_as_string(hide_password=False)))
    if have == want:
        return
    if have is None:
        raise SchemaError(
            f"the record database {where} has no schema yet: run `canhbao db upgrade` first"
        )
    if not known(have):
        raise SchemaError(
            f"the record database {where} is at schema {have}, newer than this canhbao "
            f"(which writes {want}): upgrade canhbao, or use another database"
        )
    raise SchemaError(
        f"the record database {where} is at schema {have}, older than this canhbao "
        f"(which writes {want}): run `canhbao db upgrade`"
    )
