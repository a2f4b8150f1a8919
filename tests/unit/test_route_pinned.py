"""What agencies, committees, partners and citizens receive, pinned byte for byte: the
route stage's every record (webhook JSON with its three texts, e-mail text and HTML,
SMS, CAP XML, group entries, suppression receipts, broadcast requests) for a set of
flood states under the shipped configuration, the citizens' SMS and loudspeaker
messages of an approved broadcast, and a group's digest. A change that makes routing
or rendering cheaper must leave every byte as it was; a deliberate change of wording
regenerates the file (``python -m tests.unit.test_route_pinned``) and shows in review.

Only what differs on each run is masked: a notification's ``created_at`` (wall clock)
a broadcast request's random ``event_id`` and a receipt's ``at``."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alerting.audiences import Audiences
from alerting.directory import Directory
from alerting.messages import flush_renderer, renderer
from alerting.notify import citizen_notifications
from alerting.routes import load_routing
from pipeline.engine import Engine
from pipeline.rules.loader import RuleSet, load_rules
from pipeline.worker.stages.route import RouteStage, Views
from tests.unit.stage_kit import Msg, Outputs
from topics.catalogue import APPROVALS, GROUP_NOTIFICATIONS, RECEIPTS, WARNINGS
from topics.models import Audience, Channel, Domain, Reading, Warning

REPO = Path(__file__).resolve().parents[2]
PINNED = REPO / "tests" / "data" / "pinned" / "route.jsonl"
NOW = datetime(2025, 10, 7, 5, 0, tzinfo=UTC)  # 12:00 in Vietnam: no quiet hours
NIGHT = datetime(2025, 10, 7, 16, 0, tzinfo=UTC)  # 23:00 in Vietnam: quiet hours
_VARYING = re.compile(rb'"(created_at|event_id)":"[^"]*"')
_RECEIPT_AT = re.compile(rb'"at":"[^"]*"')


def _floods(ruleset: RuleSet, directory: Directory) -> list[Warning]:
    """The Đáp Cầu flood rising through levels I to III and clearing: every state the
    engine writes, in order."""
    engine, store = Engine(ruleset, directory), {}
    states: list[Warning] = []
    levels = (3.9, 4.1, 4.4, 4.7, 5.0, 5.38, 5.7, 6.0, 6.42, 6.5, 6.1, 5.6, 5.1, 4.6, 4.1, 3.6, 3.2)
    for i, value in enumerate(levels):
        reading = Reading(
            station_id="dap-cau", domain=Domain.WATER, metric="water_level_m", value=value,
            observed_at=NOW - timedelta(minutes=30 * (len(levels) - i)), source="test",
        )  # fmt: skip
        states += engine.on_reading(reading, store, now=NOW, mode="station").warnings
    return states


def _drill(w: Warning) -> Warning:
    return Warning.model_validate(
        {**w.model_dump(), "warning_id": f"{w.warning_id}.drill", "exercise": True}
    )


async def _route(warnings: list[Warning], directory: Directory, now: datetime) -> Outputs:
    out = Outputs()
    stage = RouteStage(
        routing=load_routing(REPO / "config/routes.yaml"), directory=directory,
        audiences=Audiences.load(REPO / "config/audiences.yaml"), render=renderer(directory),
        views=Views(clock=lambda: now), notifications=out.notifications(),
        groups=out.to(GROUP_NOTIFICATIONS), receipts=out.to(RECEIPTS),
        approvals=out.to(APPROVALS), dead=out.dead, metrics=out.metrics, clock=lambda: now,
    )  # fmt: skip
    await stage.handle_batch(
        [(Msg(WARNINGS, 0, i, w.warning_id.encode()), w.to_bytes()) for i, w in enumerate(warnings)]
    )
    return out


def produce() -> list[dict[str, str]]:
    """Every pinned record, in the order it was produced."""
    directory = Directory.load(REPO / "config/geography.yaml", REPO / "config/directory.yaml")
    floods = _floods(load_rules(REPO / "rules"), directory)
    rows: list[dict[str, str]] = []

    def add(topic: str, key: bytes | None, value: bytes) -> None:
        value = _VARYING.sub(lambda m: b'"' + m.group(1) + b'":"*"', value)
        if topic.endswith(RECEIPTS):  # when it was written: the wall clock
            value = _RECEIPT_AT.sub(b'"at":"*"', value)
        rows.append({"topic": topic, "key": (key or b"").decode(), "value": value.decode()})

    for label, warnings, now in (
        ("day", floods, NOW),
        ("drill", [_drill(w) for w in floods], NOW),
        ("night", floods[:2], NIGHT),
    ):
        out = asyncio.run(_route(warnings, directory, now))
        for topic, writer in sorted(out.topics.items()):
            for r in writer.records:
                add(f"{label}:{topic}", r.key, r.value or b"")
    audiences = Audiences.load(REPO / "config/audiences.yaml")
    level3 = next(w for w in floods if w.level == 3)
    for w in (level3, _drill(level3)):
        communes = [a.code for a in w.areas]
        channels = [Channel.SMS, Channel.LOUDSPEAKER]
        for n in citizen_notifications(w, communes, channels, audiences, renderer(directory)):
            add("citizens", n.receiver_id.encode(), n.to_bytes())
    flush = flush_renderer()
    pair = [floods[1], _drill(floods[1]).model_copy(update={"exercise": False})]
    for channel in (Channel.WEBHOOK, Channel.EMAIL, Channel.SMS):
        for lang in ("vi", "en", "km"):
            for reminder in (False, True):
                msg = flush(pair, frozenset({pair[0].warning_id}), channel, lang,
                            Audience.AGENCY, reminder, {"hazard": "river_flood"})  # fmt: skip
                body = json.dumps([msg.subject, msg.body, msg.html, msg.payload],
                                  ensure_ascii=False, sort_keys=True)  # fmt: skip
                add(f"digest:{channel.value}:{lang}:{reminder}", None, body.encode())
    return rows


def test_what_receivers_get_is_unchanged_byte_for_byte() -> None:
    expected = [json.loads(line) for line in PINNED.read_text(encoding="utf-8").splitlines()]
    got = produce()
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g == e


if __name__ == "__main__":
    rows = produce()
    PINNED.parent.mkdir(parents=True, exist_ok=True)
    PINNED.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    print(f"{len(rows)} records pinned in {PINNED}", file=sys.stderr)
