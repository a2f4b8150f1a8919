"""``canhbao topics create`` reads the broker's answer for each topic: the admin client
returns per-topic errors instead of raising them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from topics import admin
from topics.catalogue import CATALOGUE


@dataclass
class Response:
    topic_errors: list[tuple[str, int, str | None]] = field(default_factory=list)


class FakeAdmin:
    """A broker whose listing is stale: it lists nothing, and answers create requests
    with the error code configured for each topic (0: created)."""

    codes: dict[str, int] = {}  # noqa: RUF012

    def __init__(self, **kwargs: Any) -> None:
        pass

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def list_topics(self) -> list[str]:
        return []

    async def create_topics(self, topics: list[Any]) -> Response:
        return Response([(t.name, FakeAdmin.codes.get(t.name, 0), None) for t in topics])

    async def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        return [{"topic": n, "error_code": 0, "partitions": [{}] * 3} for n in names]


@pytest.fixture
def fake_admin(monkeypatch: pytest.MonkeyPatch) -> type[FakeAdmin]:
    monkeypatch.setattr(admin, "AIOKafkaAdminClient", FakeAdmin)
    FakeAdmin.codes = {}
    return FakeAdmin


async def test_a_topic_the_listing_missed_is_reported_as_existing_not_created(
    fake_admin: type[FakeAdmin],
) -> None:
    first, *rest = (s.name for s in CATALOGUE)
    fake_admin.codes = {first: 36}  # TOPIC_ALREADY_EXISTS
    report = await admin.create_topics("127.0.0.1:9", default_partitions=3)
    assert report.existing == [first]
    assert report.created == rest


async def test_a_topic_the_broker_refuses_stops_with_its_name_and_reason(
    fake_admin: type[FakeAdmin],
) -> None:
    name = CATALOGUE[1].name
    fake_admin.codes = {name: 38}  # INVALID_REPLICATION_FACTOR
    with pytest.raises(admin.TopicCreationError, match=f"topic {name}: InvalidReplicationFactor"):
        await admin.create_topics("127.0.0.1:9", default_partitions=3, replication_factor=3)


async def test_topics_for_a_three_broker_cluster_keep_a_write_on_two_of_them(
    fake_admin: type[FakeAdmin], monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[Any] = []

    class Recording(FakeAdmin):
        async def create_topics(self, topics: list[Any]) -> Response:
            sent.extend(topics)
            return await super().create_topics(topics)

    monkeypatch.setattr(admin, "AIOKafkaAdminClient", Recording)
    await admin.create_topics(
        "127.0.0.1:9", default_partitions=3, replication_factor=3, min_insync_replicas=2
    )
    assert len(sent) == len(CATALOGUE)
    for t in sent:
        assert t.replication_factor == 3
        assert t.topic_configs["min.insync.replicas"] == "2"
        # The catalogue's own settings (compaction, retention) are kept.
        assert t.topic_configs["cleanup.policy"] in ("compact", "delete")


async def test_more_in_sync_replicas_than_copies_is_refused_before_any_topic_is_made(
    fake_admin: type[FakeAdmin],
) -> None:
    with pytest.raises(ValueError, match=r"min\.insync\.replicas 3 must be between 1 and"):
        await admin.create_topics(
            "127.0.0.1:9", default_partitions=3, replication_factor=2, min_insync_replicas=3
        )
