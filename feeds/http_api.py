"""The HTTP ingest API (``canhbao feed http``): sensors and agencies POST JSON.

- ``POST /v1/readings`` / ``POST /v1/reports``: one ``Reading`` / ``Report`` object, or
  a JSON array of them (a batch). Answers 202 with the count once the broker has
  acknowledged every message, so an accepted reading is never lost.
- A batch is all-or-nothing: if any item is invalid (400) or not allowed for the
  sender (403), nothing is produced and the answer lists each failing item's index,
  field and reason; the client fixes and resends the whole batch, without duplicates.
  Invalid includes what the pipeline's validate stage would refuse (the same policy,
  :mod:`pipeline.validate`): a time too far ahead of the clock, implausibly old, or
  older than the live lateness bound (history never raises a live warning); an
  unknown station, or a domain, metric or commune that is not the station's; a
  report about an unknown commune; a drill's clock (drills are played, not posted).
- A source whose key allows it (``hold_unknown_stations``) may send readings from
  stations not yet in the geography: those are *held* (kept on the dead-letter topic
  with stage ``hold``, to replay once the station is added), listed under ``held``
  in the 202 answer, logged and counted; never evaluated.
- Every request carries a per-source key (``Authorization: Bearer <key>`` or
  ``X-API-Key``); each reading's ``source`` is set to the key's source id.
- ``GET /openapi.json`` (OpenAPI 3.1, from the message models), ``GET /healthz``.

Readings are keyed by ``station_id`` and reports by their first area, as the topic
catalogue says. The pipeline's validate stage stays the authority: this API refuses
early only so that the sender learns why, while it can still fix it.

Module imports stay light: ``canhbao feed`` imports every adapter to build its help.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from topics.errors import error_fields

if TYPE_CHECKING:
    from datetime import datetime

    from aiohttp import web
    from multidict import CIMultiDictProxy

    from alerting.directory import Directory
    from feeds.apikeys import KeyStore, Source
    from feeds.sink import Sink
    from pipeline.validate import Refused, TimePolicy
    from topics.metrics import Metrics
    from topics.models import Reading, Report

    Item = Reading | Report

log = logging.getLogger(__name__)

READINGS_PATH = "/v1/readings"
REPORTS_PATH = "/v1/reports"
JSON_TYPE = "application/json"
FEED = "http"


@dataclass(frozen=True)
class Outcome:
    """An answer, kept apart from aiohttp so each step is a plain function."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Kind:
    """What one endpoint takes: the model, the topic, the key, and who may send it."""

    name: str
    model: type[Reading] | type[Report]
    topic: str
    key: Callable[[Any], str]
    station: Callable[[Any], str | None]  # None: not bound to a station (reports)
    stamp: Callable[[Any, Source], Item]
    # What the validate stage would refuse (time, station registry), or None.
    judge: Callable[..., Refused | None]


def _kinds() -> dict[str, Kind]:
    from pipeline.validate import judge_reading, judge_report
    from topics.catalogue import INGEST_READINGS, INGEST_REPORTS
    from topics.models import Reading, Report

    def stamp_reading(r: Reading, source: Source) -> Reading:
        # The key says who sent it; a client-supplied ``source`` is not trusted.
        return r.model_copy(update={"source": source.id})

    readings = Kind(
        name="readings",
        model=Reading,
        topic=INGEST_READINGS,
        key=lambda r: r.station_id,
        station=lambda r: r.station_id,
        stamp=stamp_reading,
        judge=judge_reading,
    )
    # The catalogue keys raw reports by their first area; validate fans them out per area.
    reports = Kind(
        name="reports",
        model=Report,
        topic=INGEST_REPORTS,
        key=lambda r: r.areas[0],
        station=lambda r: None,
        stamp=lambda r, source: r,  # a Report has no source field; its reporter is a person
        judge=judge_report,
    )
    return {k.name: k for k in (readings, reports)}


def error(status: int, message: str, detail: str = "", **extra: Any) -> Outcome:
    body: dict[str, Any] = {"error": message}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return Outcome(status, body)


def presented_key(headers: CIMultiDictProxy[str]) -> str | None:
    """The key a request presents; None for none, or for two different ones (a
    Bearer token and an ``X-API-Key``): which sender it is must not be a guess."""
    auth = headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    bearer = token.strip() if scheme.lower() == "bearer" else ""
    api_key = headers.get("X-API-Key", "")
    if bearer and api_key and bearer != api_key:
        return None
    return bearer or api_key or None


def parse_items(body: bytes) -> list[Any] | Outcome:
    """The items of a JSON object or array, or a 400 saying where the JSON broke."""
    try:
        # Decode explicitly: json.loads(bytes) would guess UTF-16/32 and accept them.
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return error(400, "body is not UTF-8", f"invalid byte at position {exc.start}")
    except json.JSONDecodeError as exc:
        return error(
            400,
            "invalid JSON",
            f"{exc.msg} at line {exc.lineno} column {exc.colno}",
            line=exc.lineno,
            column=exc.colno,
            position=exc.pos,
        )
    except RecursionError:
        return error(400, "invalid JSON", "nested too deeply")
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list):
        return data
    return error(400, "expected a JSON object or an array of objects", f"got {type(data).__name__}")


def validate_items(kind: Kind, items: list[Any]) -> list[Item] | Outcome:
    """Every item as a model, or a 400 listing every invalid item (index, field, message)."""
    from pydantic import ValidationError

    models: list[Item] = []
    failures: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            models.append(kind.model.model_validate(item))
        except ValidationError as exc:
            # The same field paths as the pipeline's dead letters (pipeline.validate).
            errors = [
                {"field": field, "message": message}
                for field, message in error_fields(exc, "(item)")
            ]
            failures.append({"index": index, "errors": errors})
    if failures:
        return error(
            400,
            f"{len(failures)} of {len(items)} {kind.name} are invalid",
            "nothing was accepted; fix these and send the whole batch again",
            items=failures,
        )
    return models


@dataclass(frozen=True)
class Judged:
    """The items the pipeline would take, and those held (unknown station, from a
    source that may add stations) with why."""

    take: list[Item]
    held: list[tuple[int, Item, str]]
    # refusal code -> how many items (for the counter and the log line)
    refused: dict[str, int] = field(default_factory=dict)
    # A 400 listing every refused item, when there is any.
    answer: Outcome | None = None


def judge_items(
    kind: Kind,
    source: Source,
    models: list[Item],
    *,
    now: datetime,
    policy: TimePolicy,
    directory: Directory,
) -> Judged:
    """Every item judged by the validate stage's policy: what to take and what to hold,
    or a 400 listing each item it would refuse (index, field, reason)."""
    from collections import Counter

    from pipeline.validate import Code

    failures: list[dict[str, Any]] = []
    codes: Counter[str] = Counter()
    take: list[Item] = []
    held: list[tuple[int, Item, str]] = []
    for index, m in enumerate(models):
        if m.drill is not None:
            codes["drill"] += 1
            failures.append(
                {
                    "index": index,
                    "errors": [
                        {
                            "field": "drill",
                            "message": "a drill's clock is set by canhbao simulate and "
                            "canhbao feed replay --shift-to-now, not by the ingest API",
                        }
                    ],
                }
            )
            continue
        refused = kind.judge(m, now=now, policy=policy, directory=directory)
        if refused is None:
            take.append(m)
            continue
        if refused.code is Code.UNKNOWN_STATION and source.hold_unknown_stations:
            held.append((index, m, refused.reason))
            continue
        codes[refused.code.value] += 1
        errors = []
        for e in refused.errors:
            name, _, message = e.partition(": ")
            errors.append({"field": name, "message": message})
        failures.append({"index": index, "errors": errors})
    answer = None
    if failures:
        what = ", ".join(f"{n} {code}" for code, n in sorted(codes.items()))
        answer = error(
            400,
            f"{len(failures)} of {len(models)} {kind.name} are refused ({what})",
            "nothing was accepted; fix these and send the whole batch again"
            + (
                ". History (older than the live lateness bound) never raises a live "
                "warning: evaluate it with canhbao rules backtest"
                if codes.get(Code.HISTORICAL.value)
                else ""
            ),
            items=failures,
        )
    return Judged(take, held, dict(codes), answer)


def authorize(kind: Kind, source: Source, models: list[Item]) -> Outcome | None:
    """A 403 naming every item the source may not send, or None when all are allowed."""
    failures = []
    for index, m in enumerate(models):
        refused = source.refusal(m.domain, kind.station(m))
        if refused is not None:
            failures.append(
                {"index": index, "errors": [{"field": refused[0], "message": refused[1]}]}
            )
    if not failures:
        return None
    return error(
        403,
        f"{len(failures)} of {len(models)} {kind.name} are not allowed for source {source.id!r}",
        "nothing was accepted",
        items=failures,
    )


class IngestAPI:
    """The endpoints; ``sink`` is a KafkaSink in production and a MemorySink in tests."""

    def __init__(
        self,
        sink: Sink,
        keys: KeyStore,
        *,
        directory: Directory,
        policy: TimePolicy | None = None,
        clock: Callable[[], datetime] | None = None,
        max_body: int = 1024 * 1024,
        max_items: int = 5000,
        metrics: Metrics | None = None,
    ) -> None:
        """``directory``: the station registry items are judged against; ``policy``:
        the time bounds (default ones if None); ``metrics``: where refusals are counted."""
        from pipeline.validate import TimePolicy
        from topics.metrics import Metrics
        from topics.models import utcnow

        self.metrics = metrics or Metrics.default()
        self.sink = sink
        self.keys = keys
        self.directory = directory
        self.policy = policy or TimePolicy()
        self.clock = clock or utcnow
        self.max_body = max_body
        self.max_items = max_items
        self.kinds = _kinds()

    def app(self) -> web.Application:
        from aiohttp import web

        # aiohttp refuses a larger body itself (chunked ones too): client_max_size.
        app = web.Application(client_max_size=self.max_body)
        app.router.add_post(READINGS_PATH, self._endpoint(self.kinds["readings"]))
        app.router.add_post(REPORTS_PATH, self._endpoint(self.kinds["reports"]))
        app.router.add_get("/openapi.json", self._openapi)
        app.router.add_get("/healthz", self._healthz)
        return app

    def _endpoint(self, kind: Kind) -> Callable[[web.Request], Any]:
        from aiohttp import web

        async def handler(request: web.Request) -> web.Response:
            outcome = await self.ingest(kind, request)
            self.metrics.feed_http_requests.labels(kind.name, str(outcome.status)).inc()
            return web.json_response(outcome.body, status=outcome.status, headers=outcome.headers)

        return handler

    async def ingest(self, kind: Kind, request: web.Request) -> Outcome:

        self.keys.refresh()
        source = self.keys.authenticate(presented_key(request.headers))
        if source is None:
            self.metrics.feed_refused.labels(FEED, "unauthenticated").inc()
            out = error(
                401,
                "missing or unknown API key",
                "send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            )
            return Outcome(out.status, out.body, {"WWW-Authenticate": 'Bearer realm="canhbao"'})
        if request.content_type != JSON_TYPE:
            self.metrics.feed_refused.labels(FEED, "media_type").inc()
            return error(
                415, f"expected Content-Type {JSON_TYPE}", f"got {request.content_type or 'none'}"
            )
        body = await self._read(request)
        if isinstance(body, Outcome):
            self.metrics.feed_refused.labels(FEED, "too_large").inc()
            return body
        return await self._accept(kind, source, body)

    async def _read(self, request: web.Request) -> bytes | Outcome:
        from aiohttp import web

        too_large = error(
            413,
            f"the body is larger than {self.max_body} bytes",
            "split the batch",
            limit=self.max_body,
        )
        if request.content_length is not None and request.content_length > self.max_body:
            return too_large  # said up front: no need to read it
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            return too_large

    async def _accept(self, kind: Kind, source: Source, body: bytes) -> Outcome:

        items = parse_items(body)
        if isinstance(items, Outcome):
            self.metrics.feed_refused.labels(FEED, "invalid_json").inc()
            return items
        if len(items) > self.max_items:
            self.metrics.feed_refused.labels(FEED, "too_many_items").inc()
            return error(
                413,
                f"{len(items)} items; at most {self.max_items} per request",
                "split the batch",
                limit=self.max_items,
            )
        models = validate_items(kind, items)
        if isinstance(models, Outcome):
            self.metrics.feed_refused.labels(FEED, "invalid").inc()
            return models
        judged = judge_items(
            kind, source, models, now=self.clock(), policy=self.policy, directory=self.directory
        )
        if judged.answer is not None:
            for code, n in judged.refused.items():
                self.metrics.feed_refused.labels(FEED, code).inc(n)
            # Say so where operators look: history or far-future stamps mean a sender
            # replaying old data or with a wrong clock.
            log.warning("feed http: source %r: %s", source.id, judged.answer.body["error"])
            return judged.answer
        refused = authorize(kind, source, judged.take + [m for _, m, _ in judged.held])
        if refused is not None:
            self.metrics.feed_refused.labels(FEED, "forbidden").inc()
            return refused
        stamped = [kind.stamp(m, source) for m in judged.take]
        messages: list[tuple[str, bytes | None, bytes]] = [
            (kind.topic, kind.key(m).encode(), m.to_bytes()) for m in stamped
        ]
        messages += [
            self._hold(kind, source, kind.stamp(m, source), why) for _, m, why in judged.held
        ]
        try:
            await self.sink.send_many(messages)
        except Exception:  # any broker failure: the client must know to resend
            log.exception(
                "feed http: the broker did not acknowledge %d %s", len(messages), kind.name
            )
            self.metrics.feed_refused.labels(FEED, "broker").inc()
            out = error(
                503,
                "the broker did not acknowledge",
                "some items may have been stored; send the whole batch again "
                "(the quality gate drops a reading it already has as a duplicate)",
            )
            return Outcome(503, out.body, {"Retry-After": "5"})
        self.metrics.feed_messages.labels(FEED, source.id, kind.name).inc(len(stamped))
        answer: dict[str, Any] = {
            "accepted": len(stamped),
            "topic": kind.topic,
            "source": source.id,
        }
        if judged.held:
            self.metrics.feed_refused.labels(FEED, "held").inc(len(judged.held))
            stations = sorted({kind.key(m) for _, m, _ in judged.held})
            log.warning(
                "feed http: source %r: held %d %s from unknown station(s) %s: add them to "
                "the geography, then replay the held records (canhbao.deadletter, stage hold)",
                source.id,
                len(judged.held),
                kind.name,
                ", ".join(stations),
            )
            answer["held"] = [
                {"index": i, "station_id": kind.key(m), "reason": why} for i, m, why in judged.held
            ]
        return Outcome(202, answer)

    @staticmethod
    def _hold(kind: Kind, source: Source, item: Item, why: str) -> tuple[str, bytes | None, bytes]:
        """A held item as a dead letter: kept whole, to replay to its topic once its
        station is in the geography."""
        from topics.catalogue import DEADLETTER
        from topics.models import DeadLetter

        letter = DeadLetter(
            source_topic=kind.topic,
            key=kind.key(item).encode(),
            original=item.to_bytes(),
            stage="hold",
            reason=f"held: {why}; source {source.id!r} may add stations: add it to the "
            f"geography, then replay this record to {kind.topic}",
        )
        return DEADLETTER, kind.topic.encode(), letter.to_bytes()

    async def _openapi(self, request: web.Request) -> web.Response:
        from aiohttp import web

        return web.json_response(openapi(self.max_body, self.max_items))

    async def _healthz(self, request: web.Request) -> web.Response:
        from aiohttp import web

        return web.json_response({"status": "ok", "sources": len(self.keys.sources)})


def _error_schema() -> dict[str, Any]:
    problem = {
        "type": "object",
        "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
        "required": ["field", "message"],
    }
    item = {
        "type": "object",
        "properties": {
            "index": {"type": "integer", "description": "0-based position in the batch"},
            "errors": {"type": "array", "items": problem},
        },
        "required": ["index", "errors"],
    }
    return {
        "type": "object",
        "properties": {
            "error": {"type": "string"},
            "detail": {"type": "string"},
            "items": {"type": "array", "items": item},
            "line": {"type": "integer"},
            "column": {"type": "integer"},
            "position": {"type": "integer"},
            "limit": {"type": "integer"},
        },
        "required": ["error"],
    }


def _operation(model: str, noun: str, max_items: int, max_body: int) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{model}"}

    def err(description: str) -> dict[str, Any]:
        schema = {"$ref": "#/components/schemas/Error"}
        return {"description": description, "content": {JSON_TYPE: {"schema": schema}}}

    accepted = {"$ref": "#/components/schemas/Accepted"}
    return {
        "summary": f"Send one {noun} or a batch of up to {max_items}",
        "description": "All-or-nothing: when any item is invalid or not allowed, nothing "
        "is accepted and the answer lists every failing item; fix and resend the batch.",
        "security": [{"bearer": []}, {"apiKey": []}],
        "requestBody": {
            "required": True,
            "content": {
                JSON_TYPE: {
                    "schema": {
                        "oneOf": [ref, {"type": "array", "items": ref, "maxItems": max_items}]
                    }
                }
            },
        },
        "responses": {
            "202": {
                "description": "Stored on the broker",
                "content": {JSON_TYPE: {"schema": accepted}},
            },
            "400": err(
                "Invalid JSON (with its position) or invalid items (index, field): a "
                "malformed item; a time too far ahead of the clock, before the earliest "
                "plausible time or older than the live lateness bound (history); an "
                "unknown station or a domain, metric or commune that is not the "
                "station's; a report about an unknown commune"
            ),
            "401": err("Missing or unknown API key"),
            "403": err("Items outside the source's allowed domains or stations"),
            "413": err(f"Body above {max_body} bytes or more than {max_items} items"),
            "415": err(f"Content-Type is not {JSON_TYPE}"),
            "503": err("The broker did not acknowledge; send the batch again"),
        },
    }


def _declare_schema_version(schema: dict[str, Any]) -> None:
    """Declare the versions the models accept (``topics.models.Message``: 1 up to this
    build's ``SCHEMA_VERSION``). The model checks them in a validator, which keeps its
    readable reason but is invisible to the JSON schema, which would say "any integer"."""
    from topics.models import SCHEMA_VERSION

    schema["properties"]["schema_version"] = {
        "type": "integer",
        "minimum": 1,
        "maximum": SCHEMA_VERSION,
        "default": SCHEMA_VERSION,
        "title": "Schema Version",
        "description": f"Version of the message format; this server reads 1 to {SCHEMA_VERSION}",
    }


def openapi(max_body: int = 1024 * 1024, max_items: int = 5000) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API, its schemas taken from the message models."""
    from pydantic.json_schema import models_json_schema

    from topics.models import Reading, Report

    _, defs = models_json_schema(
        [(Reading, "validation"), (Report, "validation")],
        ref_template="#/components/schemas/{model}",
    )
    schemas = dict(defs.get("$defs", {}))
    for name in ("Reading", "Report"):
        _declare_schema_version(schemas[name])
    schemas["Error"] = _error_schema()
    held = {
        "type": "object",
        "properties": {
            "index": {"type": "integer", "description": "0-based position in the batch"},
            "station_id": {"type": "string"},
            "reason": {"type": "string"},
        },
        "required": ["index", "station_id", "reason"],
    }
    schemas["Accepted"] = {
        "type": "object",
        "properties": {
            "accepted": {"type": "integer", "description": "items stored for the pipeline"},
            "topic": {"type": "string"},
            "source": {"type": "string"},
            "held": {
                "type": "array",
                "items": held,
                "description": "readings from stations not in the geography, held for "
                "the source's owner (sources allowed to add stations only)",
            },
        },
        "required": ["accepted", "topic", "source"],
    }
    # A drill's clock is set by the drill players only; the API refuses it.
    schemas.pop("DrillClock", None)
    for name in ("Reading", "Report"):
        schemas[name]["properties"].pop("drill", None)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "canhbao ingest API",
            "version": "1",
            "description": "Readings and reports into the early-warning pipeline.",
        },
        "paths": {
            READINGS_PATH: {"post": _operation("Reading", "reading", max_items, max_body)},
            REPORTS_PATH: {"post": _operation("Report", "report", max_items, max_body)},
            "/healthz": {
                "get": {
                    "summary": "Liveness",
                    "security": [],
                    "responses": {"200": {"description": "Up"}},
                }
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Authorization: Bearer <per-source API key>",
                },
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }
