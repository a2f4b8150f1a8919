"""The console's read-only pages beyond the stream and warnings: the area map, the rules
in force, the pipeline's health and the record's indicators. Each module registers its
routes with one ``register(app, site, sources)`` call from ``console.web``.

What they read comes in through :class:`Sources`: the geography, the record (a
:class:`Record`, which ``canhbao/`` builds on ``recorder/``: the console may not import
another service), the Kafka side (``console.health``), and the record's read-only API
to mount. What they need of the web application comes in through :class:`Site`, so
that these modules do not import ``console.web`` (which imports them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from alerting.directory import Geography
from console.board import Board
from topics.models import RuleSetDoc

#: Where ``make setup`` (``npm ci``) puts the front-end libraries of package-lock.json.
NODE_MODULES = Path(__file__).resolve().parents[2] / "node_modules"


class RecordUnavailable(RuntimeError):
    """The record's database cannot be read now (not created yet, unreachable)."""


class Record(Protocol):
    """What the pages read of the threat record. Every call raises
    :class:`RecordUnavailable` when the database cannot be read."""

    async def rule_sets(self, limit: int) -> list[dict[str, Any]]:
        """The rule sets applied, newest first: version, applied_at, applied_by, comment."""
        ...

    async def dead_letters(self, since: datetime) -> list[dict[str, Any]]:
        """Dead letters since ``since``, oldest first: at, source_topic, stage, reason."""
        ...

    async def failed_deliveries(self, since: datetime) -> list[dict[str, Any]]:
        """Delivery attempts that gave up since ``since``: at, channel, receiver_id,
        error, status_code, warning_id."""
        ...

    async def indicators(self, period: str, area: str | None, domain: str | None) -> dict[str, Any]:
        """The indicators of ``period`` as ``canhbao indicators --json`` gives them;
        ValueError (saying what is accepted) for a period it does not understand."""
        ...


class KafkaHealth(Protocol):
    """The consumer groups' lag (``console.health.MonitoredLag`` on a real cluster)."""

    async def lag(self) -> list[dict[str, Any]]:
        """One entry per consumer group and topic: group, topic, lag, committed, end."""
        ...


class RulesSource(Protocol):
    async def in_force(self) -> RuleSetDoc | None:
        """The rule set last published on ``canhbao.control.rules``, or None."""
        ...


@dataclass(frozen=True)
class Sources:
    """What the pages read; a missing one makes its page say so, never fail."""

    geography: Geography | None = None
    record: Record | None = None
    kafka: KafkaHealth | None = None
    rules: RulesSource | None = None
    # The record's read-only API (recorder.api), mounted under /api/v1, and its
    # OpenAPI document (merged into the console's /openapi.json).
    record_api: web.Application | None = None
    record_openapi: dict[str, Any] = field(default_factory=dict)
    node_modules: Path = NODE_MODULES


@dataclass(frozen=True)
class Site:
    """What the pages use of ``console.web``."""

    render: Callable[..., web.Response]
    refuse: Callable[[web.Request, int, str], web.Response]
    lang: Callable[[web.Request], str]
    board: web.AppKey[Board]
