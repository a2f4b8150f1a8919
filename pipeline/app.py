"""The Faust application: settings, topics, tables and agents in one place.

``build_app`` makes a fresh app from settings instead of a module-level
singleton, so tests and the demo can run several with different brokers.
"""

from __future__ import annotations

import logging

import faust

from canhbao.settings import Settings
from pipeline.rules.loader import RuleSet

log = logging.getLogger(__name__)


def raw_topic(app: faust.App, name: str, partitions: int | None = None) -> faust.TopicT:
    # Values stay bytes: pydantic does the decoding, once, where it is needed.
    return app.topic(
        name, key_type=bytes, value_type=bytes, value_serializer="raw", partitions=partitions
    )


def build_app(settings: Settings, bootstrap: str, rules: RuleSet) -> faust.App:
    from alerting.audiences import Audiences
    from alerting.directory import Directory
    from alerting.messages import renderer
    from pipeline.agents import approvals, control, evaluate, ingest, route
    from pipeline.engine import Engine

    app = faust.App(
        settings.app_id,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        web_enabled=False,
        broker_rebalance_timeout=settings.rebalance_timeout,
        broker_session_timeout=max(6.0, settings.rebalance_timeout),
        broker_heartbeat_interval=1.0,
        stream_recovery_delay=0.0,
        consumer_auto_offset_reset="earliest",
        producer_linger_ms=1,
    )
    directory = Directory.load(settings.geography_path, settings.directory_path)
    holder = evaluate.EngineHolder(Engine(rules, directory, exercise=settings.exercise))
    ingest.register(app, settings)
    evaluate.register(app, settings, holder)
    # Loaded once and shared: the subscriber lists can be large.
    audiences = Audiences.load(settings.audiences_path)
    render = renderer(directory)
    route.register(app, settings, directory, audiences, render, bootstrap)
    approvals.register(app, settings, audiences, render)
    control.register(app, bootstrap, holder)
    return app
