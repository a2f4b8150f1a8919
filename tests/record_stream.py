"""A scenario's worth of messages on the record's topics, for the recorder's tests:
warning states over several communes, their notifications and delivery attempts,
operators' commands, a citizen broadcast and its approvals, a rule set, a silence set
and lifted, dead letters, and records that are not messages at all."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from alerting.routes import Silence
from topics.catalogue import (
    APPROVALS,
    COMMANDS,
    CONTROL_RULES,
    CONTROL_SILENCES,
    DEADLETTER,
    RECEIPTS,
    STATE_BROADCASTS,
    WARNINGS,
    notifications_topic,
    readings_topic,
)
from topics.ids import broadcast_id
from topics.models import (
    Action,
    Agency,
    ApprovalAction,
    ApprovalEvent,
    Area,
    Audience,
    Broadcast,
    BroadcastStatus,
    Channel,
    Command,
    DeadLetter,
    DeliveryOutcome,
    DeliveryReceipt,
    Domain,
    Evidence,
    Notification,
    Reading,
    RuleSetDoc,
    ScopeTier,
    Severity,
    Transition,
    Warning,
)

T0 = datetime(2025, 10, 14, 3, 0, tzinfo=UTC)
SNNMT = Agency(code="snnmt", name_vi="Sở Nông nghiệp và Môi trường", name_en="DAE")
COMMUNES = ["bn-vu-ninh", "bn-kinh-bac", "bn-dap-cau", "bn-tien-du"]

Msg = tuple[str, bytes | None, bytes | None]  # topic, key, value


def warning(n: int, version: int, level: int, at: datetime, **extra: object) -> Warning:
    wid = f"water.flood.{n}:st-{n}"
    communes = COMMUNES[n % len(COMMUNES) :] + COMMUNES[: n % len(COMMUNES)]
    return Warning(
        warning_id=wid,
        version=version,
        rule_id=f"water.flood.{n}",
        domain=Domain.WATER if n % 3 else Domain.ENVIRONMENT,
        hazard="river_flood" if n % 3 else "air_quality",
        subject=f"st-{n}",
        transition=Transition.RAISED if version == 1 else Transition.ESCALATED,
        level=level,
        level_name=["cleared", "I", "II", "III"][level],
        previous_level=max(0, level - 1) if version > 1 else 0,
        severity=Severity.SEVERE if level >= 2 else Severity.MODERATE,
        areas=[Area(code=c, name=c, province="bac-ninh") for c in communes[:2]],
        scope_tier=ScopeTier.COMMUNE,
        lead_agency=SNNMT,
        evidence=[
            Evidence(
                station_id=f"st-{n}",
                metric="water_level_m",
                value=4.0 + level / 10 + version / 100,
                observed_at=at - timedelta(minutes=1),
                threshold=4.3,
            )
        ],
        raised_at=T0 + timedelta(minutes=n),
        updated_at=at,
        exercise=True,
        **extra,  # type: ignore[arg-type]
    )


def stream(warnings: int = 12) -> list[Msg]:
    """Messages in the order a pipeline would publish them."""
    out: list[Msg] = []
    for n in range(warnings):
        for version, level in ((1, 1), (2, 2), (3, 3)):
            at = T0 + timedelta(minutes=n, seconds=20 * version)
            w = warning(n, version, level, at)
            out.append((WARNINGS, w.subject.encode(), w.to_bytes()))
            for i, channel in enumerate((Channel.WEBHOOK, Channel.EMAIL)):
                nid = f"{w.warning_id}:v{version}:recv-{i}:{channel.value}"
                note = Notification(
                    notification_id=nid,
                    warning_id=w.warning_id,
                    warning_version=version,
                    receiver_id=f"recv-{i}",
                    channel=channel,
                    audience=Audience.AGENCY if i == 0 else Audience.COMMUNE,
                    address="http://127.0.0.1/hook",
                    body=f"[DIỄN TẬP] Mực nước cấp {w.level_name}",
                    exercise=True,
                    created_at=at,
                )
                out.append((notifications_topic(channel), b"recv", note.to_bytes()))
                failed_first = (n + version + i) % 4 == 0
                attempts = (
                    [DeliveryOutcome.RETRYING, DeliveryOutcome.DELIVERED]
                    if (failed_first)
                    else [DeliveryOutcome.DELIVERED]
                )
                if n == 5 and version == 3 and i == 1:
                    attempts = [DeliveryOutcome.RETRYING, DeliveryOutcome.FAILED]
                for k, outcome in enumerate(attempts, start=1):
                    r = DeliveryReceipt(
                        notification_id=nid,
                        warning_id=w.warning_id,
                        receiver_id=f"recv-{i}",
                        channel=channel,
                        attempt=k,
                        outcome=outcome,
                        status_code=200 if outcome is DeliveryOutcome.DELIVERED else 503,
                        error=None if outcome is DeliveryOutcome.DELIVERED else "HTTP 503",
                        latency_seconds=0.05 * k,
                        at=at + timedelta(seconds=2 * k + (30 if n == 7 else 0)),
                    )
                    out.append((RECEIPTS, nid.encode(), r.to_bytes()))
        c = Command(
            command_id=f"cmd-verify-{n}",
            warning_id=f"water.flood.{n}:st-{n}",
            action=Action.VERIFY,
            actor="an.nguyen" if n % 2 else "binh.tran",
            reason="đã xác minh tại hiện trường",
            at=T0 + timedelta(minutes=n, seconds=30),
        )
        out.append((COMMANDS, f"st-{n}".encode(), c.to_bytes()))
        if n == 3:
            out += broadcast_messages(warning(n, 3, 3, T0 + timedelta(minutes=n, seconds=60)))
    out.append((CONTROL_RULES, b"active", RULES.to_bytes()))
    silence = Silence(
        id="maint-st-2", matchers=['station="st-2"'], starts_at=T0,
        ends_at=T0 + timedelta(hours=2), created_by="dung.pham", comment="bảo trì trạm",
    )  # fmt: skip
    out.append((CONTROL_SILENCES, b"maint-st-2", silence.model_dump_json().encode()))
    out.append((CONTROL_SILENCES, b"maint-st-2", None))
    letter = DeadLetter(
        source_topic="canhbao.ingest.readings", partition=0, offset=17, key=b"st-x",
        original=b"{not json", stage="validate", reason="not valid JSON", at=T0,
    )  # fmt: skip
    out.append((DEADLETTER, b"canhbao.ingest.readings", letter.to_bytes()))
    out.append((WARNINGS, b"st-bad", b"{this is not json"))
    out.append((COMMANDS, b"st-bad", b'{"command_id": "x"}'))
    out += readings(warnings)
    return out


#: The rule set of the stream: it watches the water level of every water station.
RULES = RuleSetDoc(
    version="2025.10.1",
    sources={
        "water.yaml": (
            "rules:\n"
            "  - id: water.flood.any\n"
            "    domain: water\n"
            "    hazard: river_flood\n"
            "    selector: {metric: water_level_m}\n"
            "    condition: {kind: threshold, direction: rising}\n"
            "    levels:\n"
            '      - {level: 1, name: "I", value: 4.30, severity: Moderate}\n'
        )
    },
    applied_by="chi.le",
    applied_at=T0,
    comment="ngưỡng mùa lũ",
)


def readings(stations: int) -> list[Msg]:
    """Validated readings of each station: four water levels (the rule set watches
    them: recorded) and a rainfall (no rule watches it: not recorded)."""
    out: list[Msg] = []
    for n in range(stations):
        for k in range(4):
            r = Reading(
                station_id=f"st-{n}", domain=Domain.WATER, metric="water_level_m",
                value=4.0 + k / 10, unit="m", observed_at=T0 + timedelta(minutes=n, seconds=15 * k),
                source="test", area=COMMUNES[n % len(COMMUNES)],
            )  # fmt: skip
            out.append((readings_topic(Domain.WATER), r.station_id.encode(), r.to_bytes()))
        rain = Reading(
            station_id=f"st-{n}", domain=Domain.WATER, metric="rainfall_mm", value=12.5,
            observed_at=T0 + timedelta(minutes=n),
        )  # fmt: skip
        out.append((readings_topic(Domain.WATER), rain.station_id.encode(), rain.to_bytes()))
    return out


def _state(b: Broadcast) -> bytes:
    """As the worker's table changelog holds it: JSON with the partition it was
    written from (``_p``)."""
    return json.dumps({**json.loads(b.to_bytes()), "_p": 2}).encode()


def broadcast_messages(w: Warning) -> list[Msg]:
    bid = broadcast_id(w.warning_id, w.version)
    b = Broadcast(
        broadcast_id=bid, warning=w, communes=["bn-dap-cau"], channels=[Channel.SMS],
        requested_at=w.updated_at, expires_at=w.updated_at + timedelta(minutes=15),
    )  # fmt: skip
    key = w.warning_id.encode()
    out: list[Msg] = []
    request = ApprovalEvent(
        event_id=f"req-{bid}", broadcast_id=bid, action=ApprovalAction.REQUEST,
        actor="pipeline", broadcast=b, at=w.updated_at,
    )  # fmt: skip
    out.append((APPROVALS, key, request.to_bytes()))
    out.append((STATE_BROADCASTS, json.dumps(bid).encode(), _state(b)))
    approvals: list[str] = []
    for i, who in enumerate(("an.nguyen", "binh.tran"), start=1):
        at = w.updated_at + timedelta(minutes=i)
        ev = ApprovalEvent(
            event_id=f"ok-{i}-{bid}", broadcast_id=bid, action=ApprovalAction.APPROVE,
            actor=who, at=at,
        )  # fmt: skip
        out.append((APPROVALS, key, ev.to_bytes()))
        approvals.append(who)
        state = b.model_copy(update={"approvals": list(approvals)})
        if i == 2:
            state = state.model_copy(update={"status": BroadcastStatus.SENT, "sent_at": at})
        out.append((STATE_BROADCASTS, json.dumps(bid).encode(), _state(state)))
    return out
