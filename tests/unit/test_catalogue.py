"""The topic catalogue: names, uniqueness, retention and per-domain/per-channel topics."""

from __future__ import annotations

import re

import pytest

from topics import catalogue
from topics.catalogue import (
    BY_NAME,
    CATALOGUE,
    DAY_MS,
    Cleanup,
    TopicSpec,
    notifications_topic,
    readings_topic,
    spec,
)
from topics.models import Channel, Domain

NAME = re.compile(r"^canhbao\.[a-z]+(\.[a-z]+)?$")


@pytest.mark.parametrize("topic", CATALOGUE, ids=lambda s: s.name)
def test_topic_name_follows_convention(topic: TopicSpec) -> None:
    assert NAME.fullmatch(topic.name), topic.name


def test_topic_names_are_unique() -> None:
    names = [s.name for s in CATALOGUE]
    assert len(names) == len(set(names))
    assert set(BY_NAME) == set(names)


@pytest.mark.parametrize("name", [catalogue.STATE_EVALUATE, catalogue.CONTROL_RULES])
def test_state_and_control_topics_are_compacted_forever(name: str) -> None:
    s = spec(name)
    assert s.cleanup is Cleanup.COMPACT
    assert s.retention_ms is None
    assert s.config()["cleanup.policy"] == "compact"
    assert s.config()["retention.ms"] == "-1"


def test_only_state_and_control_topics_are_compacted() -> None:
    compacted = {s.name for s in CATALOGUE if s.cleanup is Cleanup.COMPACT}
    assert compacted == {s.name for s in CATALOGUE if s.name.split(".")[1] in ("state", "control")}
    assert {catalogue.STATE_EVALUATE, catalogue.CONTROL_RULES} <= compacted


@pytest.mark.parametrize("domain", list(Domain))
def test_validated_readings_topic_per_domain(domain: Domain) -> None:
    name = readings_topic(domain)
    assert name == f"canhbao.readings.{domain.value}"
    assert spec(name).value == "Reading"
    assert spec(name).key == "station_id"


@pytest.mark.parametrize("channel", list(Channel))
def test_notifications_topic_per_channel(channel: Channel) -> None:
    name = notifications_topic(channel)
    assert name == f"canhbao.notifications.{channel.value}"
    assert spec(name).value == "Notification"
    assert spec(name).key == "receiver_id"


def test_catalogue_size_matches_domains_and_channels() -> None:
    fixed = {
        catalogue.INGEST_READINGS,
        catalogue.INGEST_REPORTS,
        catalogue.WARNINGS,
        catalogue.RECEIPTS,
        catalogue.DEADLETTER,
        catalogue.STATE_EVALUATE,
        catalogue.CONTROL_RULES,
        catalogue.REGROUP_READINGS,
        catalogue.CORRELATE_WARNINGS,
        catalogue.CORRELATE_REPORTS,
        catalogue.CLOCK,
        catalogue.STATE_DELIVERIES,
        catalogue.APPROVALS,
        catalogue.STATE_BROADCASTS,
        catalogue.CONTROL_SILENCES,
        catalogue.COMMANDS,
        catalogue.GROUP_NOTIFICATIONS,
        catalogue.STATE_GROUPS,
        catalogue.STATUS,
    }
    assert fixed <= set(BY_NAME)
    assert len(CATALOGUE) == len(fixed) + len(Domain) + len(Channel)


def test_dead_letter_topic_exists_and_keeps_a_month() -> None:
    s = spec("canhbao.deadletter")
    assert s.value == "DeadLetter"
    assert s.cleanup is Cleanup.DELETE
    assert s.config()["retention.ms"] == str(30 * DAY_MS)


def test_unknown_topic_lookup_names_the_topic() -> None:
    with pytest.raises(KeyError, match=r"canhbao\.nope"):
        spec("canhbao.nope")


def test_topic_spec_config_defaults_to_delete_with_seven_days() -> None:
    s = TopicSpec("canhbao.x", key="k", value="v", description="d")
    assert s.config() == {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)}
    assert s.config()["retention.ms"] == "604800000"


def test_topic_spec_config_compacted_forever() -> None:
    s = TopicSpec(
        "canhbao.x", key="k", value="v", description="d", cleanup=Cleanup.COMPACT, retention_ms=None
    )
    assert s.config() == {"cleanup.policy": "compact", "retention.ms": "-1"}


def test_topic_spec_extra_config_is_added_and_may_override() -> None:
    s = TopicSpec(
        "canhbao.x",
        key="k",
        value="v",
        description="d",
        extra_config={"min.insync.replicas": "2", "retention.ms": "1000"},
    )
    assert s.config() == {
        "cleanup.policy": "delete",
        "retention.ms": "1000",
        "min.insync.replicas": "2",
    }


def test_config_values_are_strings() -> None:
    for s in CATALOGUE:
        assert all(isinstance(v, str) for v in s.config().values()), s.name
