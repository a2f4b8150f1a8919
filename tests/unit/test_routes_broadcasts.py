"""The routing tree, inhibition, silences, the two-person rule and delivery policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerting import broadcast as bc
from alerting.routes import (
    Matcher,
    RoutingError,
    Silence,
    inhibited_by,
    load_routing,
    silenced_by,
)
from consumers.delivery import CircuitBreaker, RetryPolicy, TokenBucket
from pipeline.lifecycle import Context
from pipeline.rules.model import Rule
from tests.helpers import receivers_for, step
from topics.models import ApprovalAction, ApprovalEvent, Broadcast, BroadcastStatus, Channel

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 10, 7, 5, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def routing():
    return load_routing(REPO / "config/routes.yaml")


@pytest.fixture
def flood(dap_cau: Rule, ctx: Context, make_reading):
    def at(*values: float):
        w = None
        for i, v in enumerate(values):
            w = step(dap_cau, w, make_reading(v, minutes=10 * i), ctx) or w
        return w

    return at


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('domain="water"', {"domain": ["water"]}, True),
        ('domain!="water"', {"domain": ["water"]}, False),
        ('hazard=~"river_.*"', {"hazard": ["river_flood"]}, True),
        ('hazard!~"river_.*"', {"hazard": ["heavy_rain"]}, True),
        ("level>=2", {"level": ["3"]}, True),
        ("level>=2", {"level": ["1"]}, False),
        ('severity>="Severe"', {"severity": ["Extreme"]}, True),
        ('severity>="Severe"', {"severity": ["Moderate"]}, False),
        ('area="bn-kinh-bac"', {"area": ["bn-vu-ninh", "bn-kinh-bac"]}, True),
    ],
)
def test_matchers(text: str, labels: dict[str, list[str]], expected: bool) -> None:
    assert Matcher.parse(text).matches(labels) is expected


@pytest.mark.parametrize("bad", ["domain==water", 'hazard=~"("', 'domain>"water"'])
def test_bad_matchers_are_refused_with_the_text(bad: str) -> None:
    with pytest.raises(ValueError, match=r"matcher|regular expression|compare"):
        Matcher.parse(bad)


def test_a_routes_file_with_an_unknown_receiver_names_it(tmp_path: Path) -> None:
    f = tmp_path / "routes.yaml"
    f.write_text(
        "route: {receivers: [lead], routes: [{matchers: ['level>=3'], receivers: [nobody]}]}\n"
        "receivers: [{name: lead, to: {lead_agency: true}, channels: [webhook]}]\n"
    )
    with pytest.raises(RoutingError, match="unknown receiver 'nobody'"):
        load_routing(f)


def test_level_three_flood_goes_to_everyone_who_must_act(routing, flood) -> None:
    names = [r.name for r in receivers_for(routing, flood(4.35, 5.38, 6.42))]
    assert names == ["lead-agency", "commune-committees", "coordinators", "citizens", "partners"]
    assert [r.name for r in receivers_for(routing, flood(4.35))] == [
        "lead-agency", "commune-committees", "coordinators",
    ]  # fmt: skip


def test_a_flood_at_level_two_inhibits_the_rise_rate_warning(routing, flood) -> None:
    big = flood(4.35, 5.38)
    rise = big.model_copy(
        update={"warning_id": "water.rise.dap-cau:dap-cau", "hazard": "river_rise", "level": 1}
    )
    assert inhibited_by(routing, rise, [big]) == big
    assert inhibited_by(routing, rise, [flood(4.35)]) is None  # level I does not


def test_a_silence_holds_only_what_it_matches_and_only_while_it_lasts(flood) -> None:
    s = Silence(id="s1", matchers=['hazard="river_flood"', 'area="bn-vu-ninh"'],
                starts_at=NOW, ends_at=NOW + timedelta(hours=2), created_by="Trực ban",
                comment="bảo trì trạm")  # fmt: skip
    w = flood(4.35)
    assert silenced_by([s], w, NOW + timedelta(minutes=5)) == s
    assert silenced_by([s], w, NOW + timedelta(hours=3)) is None
    with pytest.raises(ValueError, match="after"):
        Silence(id="s2", matchers=["level>=1"], starts_at=NOW, ends_at=NOW,
                created_by="a", comment="b")  # fmt: skip


def _request(flood) -> tuple[Broadcast, ApprovalEvent]:
    w = flood(4.35, 5.38, 6.42)
    b = Broadcast(broadcast_id=f"{w.warning_id}:v{w.version}:citizens", warning=w,
                  communes=["bn-vu-ninh"], channels=[Channel.SMS], requested_at=NOW,
                  expires_at=NOW + timedelta(minutes=30))  # fmt: skip
    ev = ApprovalEvent(event_id="e0", broadcast_id=b.broadcast_id, action=ApprovalAction.REQUEST,
                       actor="canhbao", broadcast=b, at=NOW)  # fmt: skip
    return b, ev


def _approve(b: Broadcast, actor: str, at: datetime = NOW) -> ApprovalEvent:
    return ApprovalEvent(event_id=actor, broadcast_id=b.broadcast_id,
                         action=ApprovalAction.APPROVE, actor=actor, at=at)  # fmt: skip


def test_two_different_operators_must_approve(flood) -> None:
    b, request = _request(flood)
    pending = bc.apply(None, request, []).broadcast
    one = bc.apply(pending, _approve(b, "A"), [])
    assert not one.send and one.broadcast.approvals == ["A"]
    with pytest.raises(bc.Refused, match="second, different operator"):
        bc.apply(one.broadcast, _approve(b, "A"), [])
    two = bc.apply(one.broadcast, _approve(b, "B"), [])
    assert two.send and two.broadcast.status is BroadcastStatus.SENT


def test_the_operator_who_requested_a_broadcast_cannot_approve_it(flood) -> None:
    b, request = _request(flood)
    asked = request.model_copy(update={"actor": "truc-ban-a"})
    pending = bc.apply(None, asked, []).broadcast
    assert pending.requested_by == "truc-ban-a"
    with pytest.raises(bc.Refused, match=r"requested .* cannot approve"):
        bc.apply(pending, _approve(b, "truc-ban-a"), [])
    one = bc.apply(pending, _approve(b, "pho-ban-a"), [])
    two = bc.apply(one.broadcast, _approve(b, "pho-ban-b"), [])
    assert two.send and two.broadcast.approvals == ["pho-ban-a", "pho-ban-b"]


def test_an_unapproved_broadcast_expires_and_cannot_be_approved_late(flood) -> None:
    b, request = _request(flood)
    pending = bc.apply(None, request, []).broadcast
    assert bc.expire(pending, NOW + timedelta(minutes=29)) is None
    assert bc.expire(pending, NOW + timedelta(minutes=31)).status is BroadcastStatus.EXPIRED
    with pytest.raises(bc.Refused, match="expired"):
        bc.apply(pending, _approve(b, "A", NOW + timedelta(hours=1)), [])


def test_cancel_needs_a_reason_and_a_sent_broadcast_is_cancelled_everywhere(flood) -> None:
    b, request = _request(flood)
    sent = bc.apply(bc.apply(bc.apply(None, request, []).broadcast, _approve(b, "A"), [])
                    .broadcast, _approve(b, "B"), []).broadcast  # fmt: skip
    with pytest.raises(ValueError, match="reason"):
        ApprovalEvent(event_id="c", broadcast_id=b.broadcast_id, action=ApprovalAction.CANCEL,
                      actor="B", at=NOW)  # fmt: skip
    cancel = ApprovalEvent(
        event_id="c",
        broadcast_id=b.broadcast_id,
        action=ApprovalAction.CANCEL,
        actor="B",
        reason="nhầm",
        at=NOW,
    )
    out = bc.apply(sent, cancel, [])
    assert out.cancel_sent and out.broadcast.status is BroadcastStatus.CANCELLED


def test_retry_policy_gives_a_30_second_outage_time_to_end() -> None:
    p = RetryPolicy()
    shortest = sum(p.backoff(a, rng=lambda: 0.0) for a in range(1, p.max_attempts))
    longest = sum(p.backoff(a, rng=lambda: 1.0) for a in range(1, p.max_attempts))
    assert 45 < shortest < longest <= p.budget() + 1e-9 < 130


def test_token_bucket_and_circuit_breaker() -> None:
    t = [0.0]
    bucket = TokenBucket(rate=2, burst=2, clock=lambda: t[0])
    assert [bucket.wait_time() for _ in range(3)] == [0.0, 0.0, 0.5]
    breaker = CircuitBreaker(threshold=2, cooldown=10, clock=lambda: t[0])
    breaker.failure()
    assert breaker.state == "closed"
    breaker.failure()
    assert breaker.state == "open" and breaker.wait_time() == 10
    t[0] = 11
    assert breaker.state == "half-open"
    breaker.success()
    assert breaker.state == "closed"
