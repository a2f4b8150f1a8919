"""The Faust application: settings, topics, tables and agents in one place.

``build_app`` makes a fresh app from settings instead of a module-level
singleton, so tests and the demo can run several with different brokers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, cast

import faust
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent

from canhbao.settings import Settings
from pipeline.rules.loader import RuleSet
from topics import kafka as wire
from topics.metrics import Metrics

log = logging.getLogger(__name__)


def raw_topic(app: faust.App, name: str, partitions: int | None = None) -> faust.TopicT:
    # Values stay bytes: pydantic does the decoding, once, where it is needed.
    return app.topic(
        name, key_type=bytes, value_type=bytes, value_serializer="raw", partitions=partitions
    )


class Out:
    """Bytes to one topic through the app's producer, without Faust's per-message
    ``Topic.send`` machinery: that path awaits ``maybe_start_producer``, whose
    stampede guard yields to the event loop on every call (more than half a
    millisecond per message in the worker), and feeds Faust's send sensors, which
    nothing here reads. ``send`` returns the broker acknowledgement's future
    without waiting for it."""

    def __init__(self, app: faust.App, name: str) -> None:
        self.app = app
        self.name = name

    async def send(
        self, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> Awaitable[Any]:
        # The aiokafka producer Faust started and owns (created on first use).
        producer = cast(Any, self.app.producer)._ensure_producer()
        return cast(
            Awaitable[Any],
            await producer.send(self.name, value, key=key, partition=partition),
        )


class DeadLetters(wire.DeadLetters):
    """The dead-letter topic for the stream stages, through the app's producer."""

    def __init__(self, app: faust.App) -> None:
        from topics.catalogue import DEADLETTER

        super().__init__(Out(app, DEADLETTER).send, Metrics.default())


def batches(stream: faust.StreamT[Any], settings: Settings) -> AsyncIterator[Sequence[Any]]:
    """The stream's events in batches (Faust's ``take_events``: acked once the batch
    is processed); the batch closes when full or after ``batch_wait`` seconds."""
    taker = cast(faust.Stream[Any], stream)  # take_events is on Stream, not on StreamT
    return cast(
        AsyncIterator[Sequence[Any]],
        taker.take_events(settings.batch_size, within=settings.batch_wait),
    )


class App(faust.App):
    #: The worker consumer's fetch wait (see :mod:`pipeline.transport`).
    fetch_max_wait_ms: int | None = None
    #: How long a stopping worker lets its edge loops finish their batch.
    edge_grace_seconds: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._edges: dict[asyncio.Task[Any], bool] = {}  # running edge loops: graceful?

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
            self._edges[task] = graceful
            try:
                await fun()
            finally:
                self._edges.pop(task, None)

        self.task(run)

    async def on_stop(self) -> None:
        edges = dict(self._edges)
        for task, graceful in edges.items():
            if not graceful:
                task.cancel()
        if edges:
            _, late = await asyncio.wait(edges, timeout=self.edge_grace_seconds)
            for task in late:
                task.cancel()
            await asyncio.gather(*edges, return_exceptions=True)
        await super().on_stop()

    def on_init_dependencies(self) -> Any:
        deps = super().on_init_dependencies()
        # Faust's Monitor sensor keeps per-event statistics for its web UI, which a
        # canhbao worker does not run (metrics are Prometheus): a cost on every event.
        # The monitor object stays for the few places that call it directly.
        self.sensors.remove(self.monitor)
        # Without a sensor, every rebalance would log a warning that no sensor kept
        # state for it: true, and not a problem.
        self.log.logger.addFilter(_no_sensor_state_warning)
        return deps

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        from pipeline.transport import FlowControl

        return FlowControl(loop=self.loop)

    def _new_transport(self) -> Any:
        from pipeline.transport import Transport

        return Transport(self.conf.broker_consumer, self)


def _no_sensor_state_warning(record: logging.LogRecord) -> bool:
    return "Missing sensor state" not in record.getMessage()


def build_app(settings: Settings, bootstrap: str, rules: RuleSet) -> faust.App:
    from alerting.audiences import Audiences
    from alerting.directory import Directory
    from alerting.messages import flush_renderer, renderer
    from pipeline.agents import approvals, control, evaluate, group, ingest, route
    from pipeline.engine import Engine

    datadir = settings.data_dir / "worker" / settings.app_id
    datadir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = App(
        settings.app_id,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        # Faust's default is "<app id>-data" in the working directory: every bench
        # and demo run on Kafka (a fresh app id each) left one behind in the repo.
        datadir=str(datadir),
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
        consumer_group_instance_id=settings.group_instance_id,
        # aiokafka holds one open batch per partition: once it is full, every send
        # waits for a broker round trip. Faust's 16 KiB (about 60 readings) made
        # that the worker's limit; 512 KiB stays under the 1 MiB request size.
        producer_max_batch_size=512 * 1024,
    )
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms  # read by pipeline.transport
    directory = Directory.load(settings.geography_path, settings.directory_path)
    holder = evaluate.EngineHolder(
        Engine(
            rules,
            directory,
            exercise=settings.exercise,
            max_clock_skew=timedelta(seconds=settings.max_clock_skew),
        )
    )
    ingest.register(app, settings, bootstrap, directory)
    evaluate.register(app, settings, holder)
    # Loaded once and shared: the subscriber lists can be large.
    audiences = Audiences.load(settings.audiences_path)
    render = renderer(directory)
    views = route.register(app, settings, directory, audiences, render, bootstrap)
    group.register(app, settings, flush_renderer(), views)
    approvals.register(app, settings, audiences, render)
    control.register(app, bootstrap, holder)
    return app
