"""Every identifier reads back as it was built, keeps its historical form byte for
byte (receivers, the ledger and CAP feeds hold them), and a malformed one is refused
with a message naming what was expected."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topics import ids
from topics.models import ApprovalAction, ApprovalEvent, Channel

RULE = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True)
SUBJECT = st.text(min_size=1, max_size=30)
TARGET = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True)
VERSION = st.integers(min_value=1, max_value=10**9)
CHANNEL = st.sampled_from(list(Channel))


@given(RULE, SUBJECT)
def test_warning_id_round_trip(rule: str, subject: str) -> None:
    text = ids.warning_id(rule, subject)
    assert text == f"{rule}:{subject}"
    assert ids.WarningId.parse(text) == ids.WarningId(rule, subject)
    assert ids.subject_of(text) == subject


@given(RULE, SUBJECT, VERSION, TARGET, CHANNEL, st.none() | VERSION, st.booleans())
def test_notification_id_round_trip(
    rule: str, subject: str, n: int, target: str, channel: Channel, reminder: int | None,
    cancel: bool,
) -> None:  # fmt: skip
    parts = ids.NotificationId(ids.warning_id(rule, subject), n, target, channel.value,
                               reminder, cancel)  # fmt: skip
    text = str(parts)
    assert ids.parse_notification_id(text) == parts


@given(st.text(min_size=1), VERSION, TARGET, CHANNEL)
def test_digest_id_round_trip(key: str, flush: int, target: str, channel: Channel) -> None:
    group = ids.group_id(key)
    text = ids.digest_id(group, flush, "digest", [("r:a", 1), ("r:b", 3)], target, channel)
    parsed = ids.parse_notification_id(text)
    assert isinstance(parsed, ids.DigestId)
    assert (parsed.group_id, parsed.flush, parsed.target, parsed.channel) == (
        group, flush, target, channel.value)  # fmt: skip
    assert str(parsed) == text


@given(RULE, SUBJECT, VERSION)
def test_broadcast_and_cap_ids_round_trip(rule: str, subject: str, n: int) -> None:
    wid = ids.warning_id(rule, subject)
    assert ids.BroadcastId.parse(ids.broadcast_id(wid, n)) == ids.BroadcastId(wid, n)
    assert ids.is_broadcast_of(ids.broadcast_id(wid, n), wid)
    assert ids.CapIdentifier.parse(ids.cap_identifier(wid, n)) == ids.CapIdentifier(wid, n)
    assert ids.StateId.parse(ids.state_id(wid, n)) == ids.StateId(wid, n)


LABELS = st.dictionaries(
    st.from_regex(r"[a-z_]{1,8}", fullmatch=True), st.text(max_size=80), max_size=6
)


@given(TARGET, CHANNEL, LABELS, st.booleans())
def test_group_key_round_trip(target: str, channel: Channel, labels: dict[str, str],
                              exercise: bool) -> None:  # fmt: skip
    key = ids.group_key(target, channel, labels, exercise)
    parsed = ids.GroupKey.parse(key)
    assert (parsed.receiver_id, parsed.channel, parsed.exercise) == (target, channel.value,
                                                                    exercise)  # fmt: skip
    assert str(parsed) == key
    assert ids.check_group_id(ids.group_id(key)) == ids.group_id(key)


def test_the_forms_receivers_and_the_ledger_already_hold() -> None:
    wid = ids.warning_id("water.dap_cau", "dap-cau")
    assert wid == "water.dap_cau:dap-cau"
    nid = ids.notification_id(wid, 3, "sonnmt", Channel.WEBHOOK)
    assert nid == "water.dap_cau:dap-cau:v3:sonnmt:webhook"
    assert ids.reminder_id(nid, 2) == nid + ":reminder2"
    assert ids.cancel_id(nid) == nid + ":cancel"
    assert ids.broadcast_id(wid, 3) == "water.dap_cau:dap-cau:v3:citizens"
    assert ids.cap_identifier("r:trạm 1", 2) == "urn:canhbao:r:tr%E1%BA%A1m%201:v2"
    assert ids.CapIdentifier.parse("urn:canhbao:r:tr%E1%BA%A1m%201:v2").warning_id == "r:trạm 1"
    key = ids.group_key("sonnmt", Channel.EMAIL, {"hazard": "flood"}, False)
    assert key == "sonnmt|email|live|hazard=flood"
    assert ids.group_id(key) == "grp-8af40b49f0637ce9"
    assert ids.idempotency_key(nid) == nid
    # A digest: the group, the flush, what it lists (kind and states), the target.
    assert ids.digest_id("grp-0123456789abcdef", 4, "digest", [(wid, 3), ("r:x", 1)], "t",
                         Channel.SMS) == "grp-0123456789abcdef:f4:9bc208bd6a0a:t:sms"  # fmt: skip


@pytest.mark.parametrize(
    ("parse", "text", "says"),
    [
        (ids.WarningId.parse, "no-colon", "<rule_id>:<subject>"),
        (ids.WarningId.parse, ":subject", "<rule_id>:<subject>"),
        (ids.parse_notification_id, "r:s:v1:t", "notification id"),
        (ids.parse_notification_id, "r:s:vx:t:webhook", "notification id"),
        (ids.parse_notification_id, "r:s:v1:t:fax", "notification id"),
        (ids.BroadcastId.parse, "r:s:v1", "<warning>:v<version>:citizens"),
        (ids.BroadcastId.parse, "r:s:citizens", "<warning>:v<version>:citizens"),
        (ids.CapIdentifier.parse, "urn:other:r:s:v1", "urn:canhbao:"),
        (ids.GroupKey.parse, "t|fax|live|a=b", "a channel of"),
        (ids.GroupKey.parse, "t|sms|maybe|a=b", "<receiver>|<channel>"),
        (ids.check_group_id, "grp-xyz", "grp-<16 hex digits>"),
    ],
)
def test_a_malformed_id_is_refused_saying_what_was_expected(parse, text, says) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ids.InvalidId, match="not a") as caught:
        parse(text)
    assert says in str(caught.value)
    assert repr(text) in str(caught.value)


def test_a_rule_id_with_a_colon_cannot_make_a_warning_id() -> None:
    with pytest.raises(ids.InvalidId, match="rule id"):
        ids.warning_id("a:b", "s")


def test_an_approval_of_a_malformed_broadcast_id_is_refused_before_it_is_sent() -> None:
    ok = ApprovalEvent(event_id="e", broadcast_id="r:s:v2:citizens",
                       action=ApprovalAction.APPROVE, actor="op")  # fmt: skip
    assert ok.warning_id == "r:s"
    with pytest.raises(ValueError, match="not a broadcast id"):
        ApprovalEvent(event_id="e", broadcast_id="r:s", action=ApprovalAction.APPROVE, actor="op")
