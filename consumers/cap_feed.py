"""The CAP feed: the current warnings as CAP 1.2 messages over HTTP, listed in Atom.

``follow`` reads ``canhbao.warnings`` from the beginning (no consumer group: every
replica rebuilds the same view on its own) into a ``CapFeedStore``; the aiohttp
app serves it:

- ``GET /cap/feed.atom``: one entry per warning, linking to its latest CAP message;
- ``GET /cap/alerts/{identifier}.xml``: one CAP message (``application/cap+xml``);
- ``GET /healthz``.

With a ``CapSigner`` (CANHBAO_CAP_SIGNING_KEY and CANHBAO_CAP_SIGNING_CERT) each CAP
message is served with its XML signature (``alerting/cap_signature.py``); without, it
is served unsigned, and ``serve`` says so at start.

A warning stays in the feed while it is active; once over (cleared or closed) it is
shown as its ``Cancel`` message for ``keep_cancelled`` (24 h by default, counted
from the time of the Cancel), so receivers that poll see the all-clear, then it drops
out. Rules that only feed compound rules and notices about the monitoring itself
(sensor faults, data gaps) are not public warnings and never enter the feed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import quote

from aiohttp import web
from aiokafka import ConsumerRecord
from pydantic import ValidationError

from alerting.cap import (
    ATOM_MIME,
    CAP_MIME,
    DEFAULT_SENDER,
    alert_identifier,
    atom_feed,
    cap_xml,
    ended,
    is_public,
)
from alerting.cap_signature import CapSigner, describe
from alerting.directory import Directory
from topics.catalogue import WARNINGS
from topics.connection import Kafka
from topics.errors import field_errors
from topics.kafka import TopicReader
from topics.models import Warning, utcnow

log = logging.getLogger(__name__)

KEEP_CANCELLED = timedelta(hours=24)
# Signed messages kept, by identifier: a message never changes once published, and
# signing costs a private-key operation per request otherwise.
SIGNED_CACHE = 256
# Warn at start when the signing certificate expires within this: partners' verifiers
# refuse an expired one, and a new certificate must reach them before.
CERT_WARN_BEFORE = timedelta(days=30)
FEED_PATH = "/cap/feed.atom"
ALERTS_PATH = "/cap/alerts"


@dataclass
class _Tracked:
    latest: Warning
    # Recent versions, so that a reader following a feed it fetched a moment ago (or
    # a CAP <references> chain) still finds the message it was pointed to.
    versions: dict[int, Warning] = field(default_factory=dict)


class CapFeedStore:
    """The latest state of every public warning, in memory (pure: no I/O).

    ``clock`` is injectable so that expiry can be tested without waiting."""

    def __init__(
        self,
        keep_cancelled: timedelta = KEEP_CANCELLED,
        clock: Callable[[], datetime] = utcnow,
        keep_versions: int = 10,
        include: Callable[[Warning], bool] = is_public,
    ) -> None:
        if keep_versions < 1:
            raise ValueError("keep_versions must be at least 1")
        self.keep_cancelled = keep_cancelled
        self.clock = clock
        self.keep_versions = keep_versions
        self.include = include
        self.applied = 0
        self._tracked: dict[str, _Tracked] = {}
        self._by_identifier: dict[str, tuple[str, int]] = {}

    def apply(self, warning: Warning) -> bool:
        """Take a warning state; True when it changed the store.

        Older or repeated states (a replay, a duplicate) are ignored: a state is newer
        when it is later, or as late and of a higher version."""
        if not self.include(warning):
            return False
        tracked = self._tracked.get(warning.warning_id)
        if tracked is not None:
            old = tracked.latest
            if (warning.updated_at, warning.version) <= (old.updated_at, old.version):
                return False
            if warning.version <= old.version:
                # The producer's state was reset (versions restarted): forget the old ones.
                self._forget(warning.warning_id)
                tracked = None
        if tracked is None:
            tracked = self._tracked[warning.warning_id] = _Tracked(warning)
        tracked.latest = warning
        tracked.versions[warning.version] = warning
        self._by_identifier[alert_identifier(warning)] = (warning.warning_id, warning.version)
        for version in sorted(tracked.versions)[: -self.keep_versions]:
            self._drop_version(tracked, version)
        self.applied += 1
        return True

    def visible(self, warning: Warning, now: datetime | None = None) -> bool:
        if not ended(warning):
            return True
        return (now or self.clock()) - warning.updated_at <= self.keep_cancelled

    def expire(self) -> int:
        """Drop warnings whose Cancel is older than ``keep_cancelled``; how many."""
        now = self.clock()
        gone = [wid for wid, t in self._tracked.items() if not self.visible(t.latest, now)]
        for wid in gone:
            self._forget(wid)
        return len(gone)

    def entries(self) -> list[Warning]:
        """The feed: the latest state of every visible warning, newest first."""
        self.expire()
        return sorted(
            (t.latest for t in self._tracked.values()),
            key=lambda w: (w.updated_at, w.warning_id),
            reverse=True,
        )

    def get(self, identifier: str) -> Warning | None:
        """The warning state a CAP identifier names, while its warning is in the feed."""
        self.expire()
        key = self._by_identifier.get(identifier)
        if key is None:
            return None
        tracked = self._tracked.get(key[0])
        return tracked.versions.get(key[1]) if tracked is not None else None

    def __len__(self) -> int:
        return len(self.entries())

    def _drop_version(self, tracked: _Tracked, version: int) -> None:
        warning = tracked.versions.pop(version)
        self._by_identifier.pop(alert_identifier(warning), None)

    def _forget(self, warning_id: str) -> None:
        tracked = self._tracked.pop(warning_id, None)
        if tracked is not None:
            for version in list(tracked.versions):
                self._drop_version(tracked, version)


def apply_record(store: CapFeedStore, raw: bytes | None, where: str = "") -> bool:
    """Apply one record of ``canhbao.warnings``; an invalid one is logged and skipped."""
    if raw is None:
        return False  # a tombstone: nothing to show
    try:
        warning = Warning.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(field_errors(exc, "(record)")[:3])
        log.warning("cap-feed: skipping an invalid warning record %s: %s", where, problems)
        return False
    return store.apply(warning)


async def follow(
    bootstrap: Kafka, store: CapFeedStore, stop_event: asyncio.Event, topic: str = WARNINGS
) -> None:
    """Apply every record of ``topic`` from the beginning until ``stop_event`` is set.

    No consumer group and no commits: the store is rebuilt from the log at each start."""

    def apply(record: ConsumerRecord[bytes, bytes]) -> None:
        apply_record(store, record.value, f"{record.topic}/{record.partition}@{record.offset}")

    async with TopicReader(bootstrap, topic, apply) as reader:
        await reader.follow(stop_event)


def alert_url(base_url: str, warning: Warning) -> str:
    # Identifiers are URL-safe except for '%' (from percent-encoded characters).
    return f"{base_url.rstrip('/')}{ALERTS_PATH}/{quote(alert_identifier(warning), safe=':')}.xml"


def make_app(
    store: CapFeedStore,
    directory: Directory,
    base_url: str | None = None,
    *,
    sender: str = DEFAULT_SENDER,
    langs: tuple[str, ...] = ("vi", "en", "km"),
    signer: CapSigner | None = None,
) -> web.Application:
    """The HTTP side. ``base_url`` (e.g. ``https://canhbao.bacninh.gov.vn``) makes the
    links in the feed; None takes scheme and host from each request. ``signer`` signs
    each CAP message (None: unsigned)."""
    signed: dict[tuple[str, int], bytes] = {}

    def message(warning: Warning) -> bytes:
        body = cap_xml(warning, directory, langs=langs, sender=sender)
        if signer is None:
            return body.encode("utf-8")
        key = (warning.warning_id, warning.version)
        if key not in signed:
            if len(signed) >= SIGNED_CACHE:
                del signed[next(iter(signed))]  # the oldest
            signed[key] = signer.sign(body)
        return signed[key]

    def base(request: web.Request) -> str:
        return (base_url or f"{request.scheme}://{request.host}").rstrip("/")

    async def feed(request: web.Request) -> web.Response:
        root = base(request)
        warnings = store.entries()
        updated = max((w.updated_at for w in warnings), default=None) or store.clock()
        body = atom_feed([(w, alert_url(root, w)) for w in warnings], root + FEED_PATH, updated)
        return web.Response(
            body=body.encode("utf-8"),
            content_type=ATOM_MIME,
            charset="utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    async def alert(request: web.Request) -> web.Response:
        warning = store.get(request.match_info["identifier"])
        if warning is None:
            raise web.HTTPNotFound(text="no such CAP message in the feed\n")
        return web.Response(
            body=message(warning),
            content_type=CAP_MIME,
            charset="utf-8",
            # One identifier, one message: it never changes once published.
            headers={"Cache-Control": "public, max-age=300"},
        )

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "alerts": len(store), "applied": store.applied})

    app = web.Application()
    app.router.add_get(FEED_PATH, feed)
    app.router.add_get(ALERTS_PATH + "/{identifier}.xml", alert)
    app.router.add_get("/healthz", healthz)
    return app


def log_signing(signer: CapSigner | None, now: datetime | None = None) -> None:
    """Say at start whether partners can verify what the feed serves."""
    if signer is None:
        log.warning(
            "cap-feed: CAP messages are served UNSIGNED (set CANHBAO_CAP_SIGNING_KEY and "
            "CANHBAO_CAP_SIGNING_CERT to sign them)"
        )
        return
    log.info(
        "cap-feed: CAP messages are signed (XML-DSig %s) by %s",
        signer.algorithm.name,
        describe(signer.certificate),
    )
    left = timedelta(seconds=signer.expires_in(now))
    if left <= CERT_WARN_BEFORE:
        log.warning(
            "cap-feed: the signing certificate %s; partners refuse signatures by an "
            "expired certificate: renew it and send them the new one",
            "has EXPIRED" if left.total_seconds() <= 0 else f"expires in {left.days} days",
        )


async def serve(
    bootstrap: Kafka,
    host: str,
    port: int,
    directory: Directory,
    *,
    base_url: str | None = None,
    stop_event: asyncio.Event | None = None,
    signer: CapSigner | None = None,
) -> None:
    """Serve the feed on ``host:port`` while following ``canhbao.warnings``; returns when
    ``stop_event`` is set (or raises when the broker connection fails)."""
    stop = stop_event or asyncio.Event()
    store = CapFeedStore()
    log_signing(signer)
    runner = web.AppRunner(make_app(store, directory, base_url, signer=signer))
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        log.info("cap-feed: serving http://%s:%d%s", host, port, FEED_PATH)
        await follow(bootstrap, store, stop)
    finally:
        await runner.cleanup()
