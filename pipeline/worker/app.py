"""The Faust application: the one place that wires the worker (topics, tables,
writers, stages, agents, timers and edge loops).

``build_app`` makes a fresh app from a :class:`WorkerConfig` instead of a
module-level singleton, so tests and the demo can run several with different brokers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, cast

import faust
from aiokafka import AIOKafkaConsumer

from alerting.messages import flush_renderer, renderer
from pipeline.engine import Engine
from pipeline.rules.loader import RuleSet
from pipeline.worker.config import WorkerConfig
from pipeline.worker.faust_fixes import (
    WorkerApp,
    broker_credentials,
    check_versions,
    install_catch_up_fetch,
)
from pipeline.worker.stages.approvals import ApprovalStage
from pipeline.worker.stages.control import ControlCheckStage, RulesControl
from pipeline.worker.stages.evaluate import SOURCES, EngineHolder, EvaluateStage
from pipeline.worker.stages.group import GroupStage
from pipeline.worker.stages.route import RouteStage, Views
from pipeline.worker.stages.validate import ValidateStage
from pipeline.worker.store import json_table
from pipeline.worker.writers import Out
from topics import kafka as wire
from topics.catalogue import (
    APPROVALS,
    CLOCK,
    COMMANDS,
    CONTROL_RULES,
    CONTROL_SILENCES,
    CORRELATE_REPORTS,
    CORRELATE_WARNINGS,
    DEADLETTER,
    GROUP_NOTIFICATIONS,
    INGEST_READINGS,
    INGEST_REPORTS,
    RECEIPTS,
    REGROUP_READINGS,
    STATE_BROADCASTS,
    STATE_EVALUATE,
    STATE_GROUPS,
    WARNINGS,
    notifications_topic,
    readings_topic,
)
from topics.connection import Kafka, client_kwargs
from topics.metrics import Metrics
from topics.models import Channel, Domain

#: A stage's handler of one record: ``(message, value)``.
Handler = Callable[[Any, bytes | None], Awaitable[None]]


def raw_topic(app: faust.App, *names: str) -> faust.TopicT:
    # Values stay bytes: pydantic does the decoding, once, where it is needed.
    return app.topic(*names, key_type=bytes, value_type=bytes, value_serializer="raw")


def batches(stream: faust.StreamT[Any], size: int, wait: float) -> AsyncIterator[Sequence[Any]]:
    """The stream's events in batches (Faust's ``take_events``: acked once the batch
    is processed); the batch closes when full or after ``wait`` seconds."""
    taker = cast(faust.Stream[Any], stream)  # take_events is on Stream, not on StreamT
    return cast(AsyncIterator[Sequence[Any]], taker.take_events(size, within=wait))


class App(WorkerApp):
    #: How long a stopping worker lets its edge loops finish their batch.
    edge_grace_seconds: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.edge_loops: dict[asyncio.Task[Any], bool] = {}  # running edge loops: graceful?

    def edge_task(self, fun: Callable[[], Awaitable[None]], *, graceful: bool = False) -> None:
        """Run ``fun``, a plain aiokafka loop beside the agents (the validate stage, the
        followers), while the app runs; a stopping worker ends these first, while its
        producer still works. Faust would cancel them last, after the producer and the
        consumer had stopped, and a consumer group member cancelled that late could
        rejoin its group on the way out and leave without a word: its partitions then
        waited out the session timeout before anyone read them. ``graceful`` loops
        watch ``should_stop`` and finish their batch (up to ``edge_grace_seconds``);
        the others are cancelled at once."""

        async def run() -> None:
            task = asyncio.current_task()
            assert task is not None
            self.edge_loops[task] = graceful
            try:
                await fun()
            finally:
                self.edge_loops.pop(task, None)

        self.task(run)

    async def on_stop(self) -> None:
        edges = dict(self.edge_loops)
        for task, graceful in edges.items():
            if not graceful:
                task.cancel()
        if edges:
            _, late = await asyncio.wait(edges, timeout=self.edge_grace_seconds)
            for task in late:
                task.cancel()
            await asyncio.gather(*edges, return_exceptions=True)
        await super().on_stop()

    def stage_agent(self, source: faust.TopicT, name: str, handle: Handler) -> None:
        """An agent that hands each event of ``source`` to ``handle``, one at a time."""

        async def agent(stream: faust.StreamT[Any]) -> None:
            async for event in stream.events():
                await handle(event.message, event.value)

        self.agent(source, name=name)(agent)


def build_app(config: WorkerConfig, bootstrap: Kafka, rules: RuleSet, metrics: Metrics) -> App:
    check_versions()
    install_catch_up_fetch()
    config.data_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = App(
        config.app_id,
        broker=f"kafka://{bootstrap}",
        broker_credentials=broker_credentials(bootstrap),
        store="memory://",
        # Faust's default is "<app id>-data" in the working directory: every bench
        # and demo run on Kafka (a fresh app id each) left one behind in the repo.
        datadir=str(config.data_dir),
        topic_partitions=config.partitions,
        topic_replication_factor=config.replication_factor,
        topic_allow_declare=True,
        web_enabled=False,
        broker_rebalance_timeout=config.rebalance_timeout,
        broker_session_timeout=max(6.0, config.rebalance_timeout),
        broker_heartbeat_interval=1.0,
        stream_recovery_delay=0.0,
        consumer_auto_offset_reset="earliest",
        producer_linger_ms=1,
        consumer_group_instance_id=config.group_instance_id,
        # aiokafka holds one open batch per partition: once it is full, every send
        # waits for a broker round trip. Faust's 16 KiB (about 60 readings) made
        # that the worker's limit; 512 KiB stays under the 1 MiB request size.
        producer_max_batch_size=512 * 1024,
    )
    app.fetch_max_wait_ms = config.fetch_max_wait_ms  # read by the transport
    app.metrics = metrics
    n = config.partitions
    dead = wire.DeadLetters(Out(app, DEADLETTER).send, metrics)
    notifications = {c: Out(app, notifications_topic(c)) for c in Channel}
    directory = config.directory
    render = renderer(directory)

    # Stage 1: validate (a plain consumer group for readings, an agent for reports).
    validate = ValidateStage(
        policy=config.time_policy,
        directory=directory,
        readings={d: Out(app, readings_topic(d)) for d in Domain},
        reports=Out(app, CORRELATE_REPORTS),
        dead=dead,
        metrics=metrics,
    )

    async def validate_readings() -> None:
        consumer = AIOKafkaConsumer(
            INGEST_READINGS,
            **client_kwargs(bootstrap),
            group_id=f"{config.app_id}.validate",
            group_instance_id=(
                f"{config.group_instance_id}.validate" if config.group_instance_id else None
            ),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=config.fetch_max_wait_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            **wire.membership(int(config.rebalance_timeout * 1000)),
        )
        await validate.run(consumer, config.batch_size, lambda: app.should_stop)

    app.edge_task(validate_readings, graceful=True)
    app.stage_agent(
        raw_topic(app, INGEST_REPORTS), "canhbao.validate-reports", validate.handle_report
    )

    # Stage 2: evaluate. Keys and values are JSON in the changelog, and the table must
    # decode them the same way on restore, or a restarted worker would not find its state.
    holder = EngineHolder(
        Engine(rules, directory, exercise=config.exercise, max_clock_skew=config.max_clock_skew)
    )
    evaluate = EvaluateStage(
        holder=holder,
        table=json_table(app, "state", STATE_EVALUATE, n),
        changelog=Out(app, STATE_EVALUATE),
        warnings=Out(app, WARNINGS),
        correlate=Out(app, CORRELATE_WARNINGS),
        regroup=Out(app, REGROUP_READINGS),
        commands=Out(app, COMMANDS),
        ticks=Out(app, CLOCK),
        dead=dead,
        metrics=metrics,
        partitions=n,
    )

    async def evaluate_agent(stream: faust.StreamT[Any]) -> None:
        async for events in batches(stream, config.batch_size, config.batch_wait):
            await evaluate.handle_batch([(e.message, e.value) for e in events])

    app.agent(raw_topic(app, *SOURCES), name="canhbao.evaluate")(evaluate_agent)
    app.timer(config.tick_interval, on_leader=True)(evaluate.tick)

    # Stage 3: route; the views are shared with the group stage.
    views = Views()
    route = RouteStage(
        routing=config.routing,
        directory=directory,
        audiences=config.audiences,
        render=render,
        views=views,
        notifications=notifications,
        groups=Out(app, GROUP_NOTIFICATIONS),
        receipts=Out(app, RECEIPTS),
        approvals=Out(app, APPROVALS),
        dead=dead,
        metrics=metrics,
    )

    async def route_agent(stream: faust.StreamT[Any]) -> None:
        # In batches, as evaluate: one acknowledgement wait per batch of warnings.
        async for events in batches(stream, config.batch_size, config.batch_wait):
            await route.handle_batch([(e.message, e.value) for e in events])

    app.agent(raw_topic(app, WARNINGS), name="canhbao.route")(route_agent)

    async def follow_views() -> None:
        await views.follow(bootstrap)

    app.edge_task(follow_views)

    # Stage 3c: aggregation groups.
    group = GroupStage(
        routing=config.routing,
        render=flush_renderer(),
        views=views,
        table=json_table(app, "groups", STATE_GROUPS, n),
        changelog=Out(app, STATE_GROUPS),
        notifications=notifications,
        dead=dead,
        metrics=metrics,
    )
    app.stage_agent(raw_topic(app, GROUP_NOTIFICATIONS, CLOCK), "canhbao.group", group.handle)

    # Stage 3b: citizen broadcasts and their approvals.
    approvals = ApprovalStage(
        audiences=config.audiences,
        render=render,
        table=json_table(app, "broadcasts", STATE_BROADCASTS, n),
        changelog=Out(app, STATE_BROADCASTS),
        notifications=notifications,
        dead=dead,
        metrics=metrics,
    )
    app.stage_agent(raw_topic(app, APPROVALS, CLOCK), "canhbao.approvals", approvals.handle)

    # Hot reload of the rules.
    control = RulesControl(holder, metrics)

    async def follow_rules() -> None:
        await control.follow(bootstrap)

    app.edge_task(follow_rules)

    # Refused control records: dead-lettered once, by the one worker of the app's group
    # that owns the control topics' single partition (the followers only skip them).
    check = ControlCheckStage(dead)
    app.stage_agent(
        raw_topic(app, CONTROL_RULES, CONTROL_SILENCES), "canhbao.control-check", check.handle
    )

    # Each worker says which rule set it follows (canhbao.state.services, the console's health).
    instance = wire.instance_name(config.group_instance_id)

    async def report() -> None:
        await wire.report_status(bootstrap, lambda: control.status(instance))

    app.edge_task(report)
    return app
