"""``canhbao feed mqtt``: sensor readings from MQTT topics to ``canhbao.ingest.readings``.

The config file (``config/mqtt_bridge.yaml``) maps topic patterns to readings. A
pattern level ``{station}``, ``{domain}``, ``{metric}`` or ``{area}`` takes that field
from the topic; the mapping's own keys fix the others; the first matching mapping wins.
A payload is a bare number (observed now) or a JSON object ``{value, observed_at?,
unit?}`` (other keys are ignored). Anything the bridge cannot turn into a valid
``Reading`` is logged with the topic and reason, counted, and produced to
``canhbao.deadletter`` with the payload as received: never dropped silently. Topics that
fit no mapping arrive through the wider ``subscribe:`` filters (e.g. ``tram/#``), so a
new or misspelt sensor topic is dead-lettered too instead of going unheard.

A payload's ``observed_at`` is judged as the pipeline's validate stage judges it
(:mod:`pipeline.validate`): too far ahead of the clock, implausibly old, or older than
the live lateness bound (history: a gateway flushing an old buffer, a replayed log) and
the reading is not sent on; it is dead-lettered with the reason (the MQTT broker
forgets a message once the bridge acknowledges it, so the dead-letter topic is where
it is kept), logged and counted, and never raises a live warning.

Delivery is at least once. The bridge subscribes with QoS 1 on a persistent session
(fixed client id, ``clean_session`` false) and acknowledges a message to the MQTT
broker only once Kafka has acknowledged what it became. If Kafka or the MQTT broker
goes away, the bridge reconnects with backoff and the broker delivers the
unacknowledged message again, so a reading may arrive twice but is not lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.validate import TimePolicy, check_time
from topics.catalogue import DEADLETTER, INGEST_READINGS
from topics.errors import field_errors, load_yaml_model
from topics.metrics import Metrics
from topics.models import DeadLetter, Domain, Reading, utcnow

if TYPE_CHECKING:
    from feeds.sink import Sink

log = logging.getLogger(__name__)

FEED = "mqtt"
STAGE = "mqtt-bridge"
QOS = 1
MAX_PAYLOAD = 64 * 1024  # as the validate stage: a reading is a few hundred bytes
FIELDS = ("station", "domain", "metric", "area")
_PLACEHOLDER = re.compile(r"^\{([a-z_]+)\}$")


class ConfigError(ValueError):
    """The bridge's config file is missing or wrong; the message names the mapping."""


class MappingConfig(BaseModel):
    """One ``mappings:`` entry: a topic pattern and the fields it does not carry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str = Field(min_length=1)
    station: str | None = None
    domain: Domain | None = None
    metric: str | None = None
    unit: str | None = None
    area: str | None = None
    source: str | None = Field(default=None, description="Reading.source; default mqtt:<topic>")

    @model_validator(mode="after")
    def _complete(self) -> MappingConfig:
        levels = self.topic.split("/")
        names = [m.group(1) for m in map(_PLACEHOLDER.match, levels) if m]
        for name in names:
            if name not in FIELDS:
                raise ValueError(f"{{{name}}}: a level may only be one of {FIELDS}")
            if getattr(self, name) is not None:
                raise ValueError(f"{name} is both in the topic and fixed")
        if len(set(names)) != len(names):
            raise ValueError("a placeholder appears twice")
        for level in levels:
            if ("{" in level or "}" in level) and not _PLACEHOLDER.match(level):
                raise ValueError(f"{level!r}: a placeholder must be a whole level")
        if "#" in levels[:-1]:
            raise ValueError("'#' may only be the last level")
        given = set(names) | {f for f in FIELDS if self.fixed(f) is not None}
        missing = [f for f in ("station", "domain", "metric") if f not in given]
        if missing:
            raise ValueError(f"neither the topic nor the mapping gives {', '.join(missing)}")
        return self

    def fixed(self, name: str) -> Any:
        return getattr(self, name)


class BrokerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str | None = None  # default: CANHBAO_MQTT_HOST
    port: int | None = None  # default: CANHBAO_MQTT_PORT


class BridgeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    broker: BrokerConfig = BrokerConfig()
    client_id: str | None = Field(
        default="canhbao-mqtt-bridge",
        description="fixed id: the broker keeps the session (and unacked messages) across "
        "reconnects; null: a random id and no persistent session",
    )
    subscribe: list[str] = Field(
        default_factory=list,
        description="wider filters (e.g. tram/#): what arrives there and fits no mapping is "
        "dead-lettered, so a new or misnamed sensor shows up instead of being ignored",
    )
    mappings: list[MappingConfig] = Field(min_length=1)


def load_config(path: Path) -> BridgeConfig:
    return load_yaml_model(path, BridgeConfig, ConfigError)


# --- Topic matching ----------------------------------------------------------------------


def subscription(pattern: str) -> str:
    """The MQTT filter of a pattern: each ``{field}`` level becomes ``+``."""
    return "/".join("+" if _PLACEHOLDER.match(lv) else lv for lv in pattern.split("/"))


def covers(general: str, specific: str) -> bool:
    """Whether every topic that ``specific`` (a filter) matches is matched by ``general``."""
    g, s = general.split("/"), specific.split("/")
    for i, level in enumerate(g):
        if level == "#":
            return True
        if i >= len(s) or s[i] == "#":
            return False
        if level != "+" and (level != s[i] or s[i] == "+"):
            return False
    return len(g) == len(s)


def match(pattern: str, topic: str) -> dict[str, str] | None:
    """The fields a topic gives under ``pattern``, or None when it does not match."""
    want, got = pattern.split("/"), topic.split("/")
    captured: dict[str, str] = {}
    for i, level in enumerate(want):
        if level == "#":
            return captured
        if i >= len(got):
            return None
        m = _PLACEHOLDER.match(level)
        if m:
            if not got[i]:
                return None
            captured[m.group(1)] = got[i]
        elif level != "+" and level != got[i]:
            return None
    return captured if len(got) == len(want) else None


# --- Payload -> Reading ------------------------------------------------------------------


@dataclass(frozen=True)
class Rejection:
    reason: str
    code: str  # a short, bounded label for the metric
    errors: list[str] = field(default_factory=list)


def parse_payload(payload: bytes) -> dict[str, Any] | Rejection:
    """``{"value": ...}`` plus what a JSON object carries, or why not."""
    if len(payload) > MAX_PAYLOAD:
        return Rejection(f"payload is {len(payload)} bytes; at most {MAX_PAYLOAD}", "too_large")
    if not payload.strip():
        return Rejection("empty payload", "bad_payload")
    try:
        data = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError:
        return Rejection("payload is not UTF-8 text", "bad_payload")
    except json.JSONDecodeError as exc:
        return Rejection(f"payload is neither a number nor a JSON object: {exc.msg}", "bad_payload")
    if isinstance(data, (int, float)) and not isinstance(data, bool):
        return {"value": data}
    if not isinstance(data, dict):
        return Rejection(
            f"expected a number or a JSON object, got {type(data).__name__}", "bad_payload"
        )
    if "value" not in data:
        return Rejection("the JSON object has no 'value'", "bad_payload")
    return data


class Converter:
    """Topic and payload to a ``Reading`` (pure: no I/O, the clock is passed in)."""

    def __init__(self, config: BridgeConfig, policy: TimePolicy | None = None) -> None:
        self.mappings = config.mappings
        self.subscribe = config.subscribe
        self.policy = policy or TimePolicy()

    def filters(self) -> list[str]:
        """What to subscribe to: the wider filters, and the mappings they do not cover.

        Overlapping subscriptions could deliver one message twice, so none overlap."""
        kept: list[str] = []
        for f in [*self.subscribe, *(subscription(m.topic) for m in self.mappings)]:
            if not any(covers(k, f) for k in kept):
                kept = [k for k in kept if not covers(f, k)] + [f]
        return kept

    def convert(self, topic: str, payload: bytes, received_at: datetime) -> Reading | Rejection:
        for mapping in self.mappings:
            fields = match(mapping.topic, topic)
            if fields is not None:
                return self._reading(mapping, fields, topic, payload, received_at)
        return Rejection("no mapping in the bridge config matches this topic", "unmapped_topic")

    def _reading(
        self,
        mapping: MappingConfig,
        fields: dict[str, str],
        topic: str,
        payload: bytes,
        received_at: datetime,
    ) -> Reading | Rejection:
        body = parse_payload(payload)
        if isinstance(body, Rejection):
            return body

        def pick(name: str) -> Any:
            return fields.get(name, mapping.fixed(name))

        data = {
            "station_id": pick("station"),
            "domain": pick("domain"),
            "metric": pick("metric"),
            "area": pick("area"),
            "value": body["value"],
            "unit": body.get("unit", mapping.unit),
            # No time in the payload: the sensor means "now", which is when it arrived.
            "observed_at": body.get("observed_at", received_at),
            "source": mapping.source or f"mqtt:{topic}"[:128],
        }
        try:
            reading = Reading.model_validate(data)
        except ValidationError as exc:
            errors = field_errors(exc, "(reading)")
            return Rejection("invalid reading: " + "; ".join(errors), "invalid", errors)
        untimely = check_time(reading.observed_at, received_at, self.policy)
        if untimely is not None:
            reason = f"{untimely.field}: {untimely.reason}"
            return Rejection(untimely.reason, untimely.kind.value, [reason])
        return reading


# --- The bridge --------------------------------------------------------------------------


@dataclass
class Stats:
    sent: int = 0
    rejected: int = 0
    reconnects: int = 0


class Bridge:
    """Runs until cancelled: connect, subscribe, forward; reconnect with backoff."""

    def __init__(
        self,
        config: BridgeConfig,
        sink: Sink,
        *,
        host: str,
        port: int,
        username: str | None = None,
        password: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        backoff: tuple[float, float] = (0.5, 30.0),
        policy: TimePolicy | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics.default()
        self.config, self.sink, self.clock = config, sink, clock
        self.converter = Converter(config, policy)
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.backoff = backoff
        self.stats = Stats()
        self.subscribed = asyncio.Event()  # set while subscribed (tests wait on it)
        self._was_up = False  # the last session got as far as subscribing

    async def run(self) -> None:
        import aiomqtt

        delay = self.backoff[0]
        while True:
            try:
                await self._session()
            except (aiomqtt.MqttError, OSError, ConnectionError) as exc:
                log.warning(
                    "mqtt-bridge: %s:%d: %s; retrying in %.1f s", self.host, self.port, exc, delay
                )
            except Exception as exc:  # the sink failed: reconnect so the broker redelivers
                log.warning("mqtt-bridge: could not produce (%s); retrying in %.1f s", exc, delay)
            self.subscribed.clear()
            self.stats.reconnects += 1
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # jitter: no thundering herd
            delay = self.backoff[0] if self._was_up else min(delay * 2, self.backoff[1])

    async def _session(self) -> None:
        import aiomqtt

        self._was_up = False
        persistent = self.config.client_id is not None
        client = aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            identifier=self.config.client_id,
            clean_session=not persistent,
        )
        # aiomqtt 2.5 acknowledges on receipt; the paho client it wraps can wait for us.
        client._client.manual_ack_set(True)
        async with client:
            for topic in self.converter.filters():
                await client.subscribe(topic, qos=QOS)
            log.info(
                "mqtt-bridge: subscribed to %s on %s:%d",
                ", ".join(self.converter.filters()),
                self.host,
                self.port,
            )
            self._was_up = True
            self.subscribed.set()
            async for message in client.messages:
                await self.handle(str(message.topic), _payload_bytes(message.payload))
                client._client.ack(message.mid, message.qos)

    async def handle(self, topic: str, payload: bytes) -> None:
        """Produce one MQTT message as a reading or a dead letter; returns once acked."""

        result = self.converter.convert(topic, payload, self.clock())
        if isinstance(result, Reading):
            await self.sink.send(INGEST_READINGS, result.station_id.encode(), result.to_bytes())
            self.stats.sent += 1
            self.metrics.feed_messages.labels(FEED, f"{self.host}:{self.port}", "readings").inc()
            return
        log.warning("mqtt-bridge: rejected a message on %s: %s", topic, result.reason)
        source = f"mqtt:{topic}"
        dead = DeadLetter(
            source_topic=source,
            key=topic.encode(),
            original=payload[:MAX_PAYLOAD],
            stage=STAGE,
            reason=result.reason,
            errors=result.errors,
        )
        await self.sink.send(DEADLETTER, source.encode(), dead.to_bytes())
        self.stats.rejected += 1
        self.metrics.feed_refused.labels(FEED, result.code).inc()


def _payload_bytes(payload: Any) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if payload is None:
        return b""
    return str(payload).encode("utf-8")
