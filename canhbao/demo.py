"""``canhbao demo``: a scenario runs end to end, for real.

Embedded broker (unless CANHBAO_KAFKA_BOOTSTRAP is set) → topics → Faust worker
(subprocess) → webhook dispatcher → a local receiver standing in for every agency
and commune committee. A scenario from ``feeds.scenarios`` (by default ``multi``:
warnings in every domain) is played in compressed time, with two malformed
messages among it to show dead-lettering. What happens is read back from the
topics themselves and printed as it happens.

A part that dies on the way (the worker killed, the dispatcher or the topic reader
failing) is started again, and the progress output says so; whatever happens, the
demo ends with its summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from aiokafka import AIOKafkaConsumer, TopicPartition

from canhbao import metrics
from canhbao.broker import (
    EMBEDDED_FETCH_MAX_WAIT_MS,
    EmbeddedBroker,
    embedded_env,
    free_port,
    rebalance_timeout,
)
from canhbao.demo_console import console_child, make_accounts, wait_until_answers
from canhbao.demo_report import Printer, Tally, describe, summary_text
from canhbao.processes import Child
from canhbao.receiver import WebhookReceiver
from canhbao.settings import Settings
from consumers.dispatcher import Dispatcher
from consumers.webhook import WebhookConfig, WebhookDispatcher
from feeds.scenarios import DEFAULT, get
from feeds.scenarios.base import Scenario, align
from feeds.simulate import KafkaBroadcaster, Outgoing, Played, play, schedule
from feeds.sink import KafkaSink
from topics.admin import create_topics
from topics.catalogue import (
    APPROVALS,
    DEADLETTER,
    INGEST_READINGS,
    RECEIPTS,
    WARNINGS,
    notifications_topic,
    readings_topic,
)
from topics.connection import Kafka, client_kwargs
from topics.models import (
    ApprovalAction,
    ApprovalEvent,
    Channel,
    DeadLetter,
    DeliveryOutcome,
    DeliveryReceipt,
    Domain,
    Notification,
    Warning,
)

# Malformed input the pipeline must reject with a reason and survive. The first one
# also tells us the worker is consuming (its dead letter comes back).
BAD_INPUT = (
    b'{"station_id": "dap-cau", "metric": "water_level_m", "value": 5.0',
    b'{"station_id": "dap-cau", "domain": "water", "metric": "water_level_m", '
    b'"value": "high", "observed_at": "2025-10-07T08:00:00+07:00"}',
)
SETTLE_RESERVE = 8.0  # seconds of --duration kept for the last warnings to be delivered
GRACE = 10.0  # seconds past --duration the demo waits for a slow machine to catch up
# A restarted worker rejoins its group and recovers its tables before it reads again:
# the demo waits that much longer for the end of the scenario.
RESTART_ALLOWANCE = 30.0
MAX_RESTARTS = 5  # of one part: past that it is not a kill but a fault, and the demo ends


class DemoFailed(Exception):
    """Why the demo cannot go on; it still prints its summary."""


class Restarts:
    """Which parts of the demo were started again, and why."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.by_part: dict[str, int] = {}
        self.extension = 0.0  # seconds the demo waits longer, for restarted workers

    def note(self, part: str, why: str, show: Printer) -> None:
        n = self.by_part[part] = self.by_part.get(part, 0) + 1
        if n > MAX_RESTARTS:
            raise DemoFailed(f"the {part} died {n} times (last: {why})")
        self.log.append(f"{part}: {why}")
        show("RESTART", f"the {part} {why}; starting it again ({n}/{MAX_RESTARTS})")


async def _observe(
    bootstrap: Kafka,
    tally: Tally,
    show: Printer,
    ready: asyncio.Event,
    positions: dict[TopicPartition, int],
    states: set[tuple[str, int]],
) -> None:
    """Read what the pipeline does and show it. ``positions`` holds where it is: a
    restarted reader carries on from there. ``states`` holds the warning versions
    seen: a restarted worker publishes some again, and they count once."""
    webhooks = notifications_topic(Channel.WEBHOOK)
    readings = {readings_topic(d) for d in Domain}
    notes = {notifications_topic(c) for c in Channel}
    topics = [*readings, *notes, DEADLETTER, WARNINGS, RECEIPTS, APPROVALS]
    consumer = AIOKafkaConsumer(
        *topics, **client_kwargs(bootstrap), group_id=None, auto_offset_reset="latest"
    )
    await consumer.start()
    try:
        if positions:
            for tp, offset in positions.items():
                consumer.seek(tp, offset)
        else:
            # Pin positions at the current end before anything is fed, so the demo
            # shows its own events only (it may run against a shared cluster).
            await consumer.seek_to_end()
            for tp in consumer.assignment():
                positions[tp] = await consumer.position(tp)
        ready.set()
        async for rec in consumer:
            positions[TopicPartition(rec.topic, rec.partition)] = rec.offset + 1
            tally.last_event = time.monotonic()
            value = rec.value or b""
            if rec.topic in readings:
                tally.ingested += 1
            elif rec.topic == DEADLETTER:
                d = DeadLetter.model_validate_json(value)
                tally.rejected += 1
                tally.probe.set()
                show("REJECTED", f"{d.source_topic} → {DEADLETTER}: {d.reason}")
            elif rec.topic == WARNINGS:
                w = Warning.model_validate_json(value)
                if (w.warning_id, w.version) in states:
                    continue
                states.add((w.warning_id, w.version))
                tag, text = describe(w, tally, tally.scenario_start)
                show(tag, text)
            elif rec.topic in notes:
                n = Notification.model_validate_json(value)
                tally.by_channel[n.channel.value] += 1
                if rec.topic == webhooks:
                    tally.notifications += 1
            elif rec.topic == RECEIPTS:
                _receipt(DeliveryReceipt.model_validate_json(value), tally, show)
            elif rec.topic == APPROVALS:
                a = ApprovalEvent.model_validate_json(value)
                if a.action is ApprovalAction.REQUEST and a.broadcast is not None:
                    tally.broadcasts += 1
                    b = a.broadcast
                    how = "/".join(c.value for c in b.channels)
                    show(
                        "APPROVAL",
                        f"{how} to citizens of {', '.join(b.communes)} ({b.warning.hazard} "
                        f"level {b.warning.level}) needs two operators' approval",
                    )
    finally:
        await consumer.stop()


def _receipt(rc: DeliveryReceipt, tally: Tally, show: Printer) -> None:
    if rc.outcome is DeliveryOutcome.DELIVERED:
        tally.delivered += 1
        tally.by_receiver[rc.receiver_id] += 1
        tally.pending_deliveries[rc.receiver_id] += 1
    elif rc.outcome is DeliveryOutcome.FAILED:
        tally.failed += 1
        show("FAILED", f"{rc.receiver_id}: {rc.error}")
    elif rc.outcome is DeliveryOutcome.SUPPRESSED:
        # Quiet hours, inhibition, silences: recorded, not sent (e-mail/SMS at night).
        tally.suppressed += 1
    else:
        show("RETRY", f"{rc.receiver_id}: {rc.error}")


async def _flush_deliveries(tally: Tally, show: Printer) -> None:
    """Deliveries, grouped every 1.5 s: one line per batch, not one per webhook."""
    while True:
        await asyncio.sleep(1.5)
        tally.flush_deliveries(show)


def _with_bad_input(items: list[Outgoing]) -> list[Outgoing]:
    """The second malformed message goes in halfway through the feed."""
    middle = items[len(items) // 2].at if items else 0.0
    bad = Outgoing(middle, INGEST_READINGS, b"dap-cau", BAD_INPUT[1], "raw")
    return sorted([*items, bad], key=lambda o: o.at)


async def _supervised(
    part: str,
    run: Callable[[], Awaitable[None]],
    restarts: Restarts,
    show: Printer,
    failed: asyncio.Future[None],
) -> None:
    """Run ``run`` until it returns; start it again each time it fails. Too many
    failures end the demo (through ``failed``)."""
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure of the part: start it again
            try:
                restarts.note(part, f"failed ({type(exc).__name__}: {exc})", show)
            except DemoFailed as fatal:
                if not failed.done():
                    failed.set_exception(fatal)
                return
            await asyncio.sleep(1.0)


async def _keep_alive(
    child: Child,
    name: str,
    restarts: Restarts,
    show: Printer,
    failed: asyncio.Future[None],
    started_again: Callable[[Child], tuple[str, str]],
    allowance: float = 0.0,
) -> None:
    """Start ``child`` again whenever it dies, until too many deaths fail the demo;
    each restart lengthens the demo by ``allowance`` seconds."""
    while True:
        ended = child.dead()
        if ended is not None:
            try:
                restarts.note(name, ended, show)
            except DemoFailed as fatal:
                if not failed.done():
                    failed.set_exception(fatal)
                return
            child.restart()
            restarts.extension += allowance
            show(*started_again(child))
        await asyncio.sleep(0.2)


async def _watch_worker(
    worker: Child, restarts: Restarts, show: Printer, failed: asyncio.Future[None]
) -> None:
    """Start the worker again whenever it dies."""
    await _keep_alive(
        worker, "worker", restarts, show, failed,
        lambda w: ("worker", f"Faust worker started again (pid {w.pid}, log {w.log})"),
        RESTART_ALLOWANCE,
    )  # fmt: skip


async def _demo(
    settings: Settings,
    scenario: Scenario,
    bootstrap: Kafka,
    broker_kind: str,
    duration: float,
    out: TextIO,
    workdir: Path,
    record_url: str | None = None,
    serve: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The demo's summary. With ``serve``, once the scenario is over, ``serve`` is
    given the summary and every part keeps running until SIGINT or SIGTERM."""
    show = Printer(out)
    tally = Tally()
    restarts = Restarts()
    started = time.monotonic()
    error: str | None = None

    def summarise() -> dict[str, Any]:
        summary = tally.summary(broker_kind, time.monotonic() - started)
        summary["restarts"] = {
            "total": len(restarts.log),
            "by_part": restarts.by_part,
            "why": restarts.log,
        }
        if error is not None:
            summary["error"] = error
        return summary

    hold = None
    if serve is not None:

        async def hold(failed: asyncio.Future[None]) -> None:
            serve(summarise())
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            print("Everything keeps running for you to click through: Ctrl-C stops it all.",
                  file=sys.stderr, flush=True)  # fmt: skip
            stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
            try:
                # A part that cannot be kept alive ends the serving too.
                await asyncio.wait({stopping, failed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
            show("stop", "stopping every part of the demo")
            # Ctrl-C in a terminal reaches the whole process group: the embedded broker
            # may be gone already, and the clients saying so at length would bury the
            # demo's last lines. Its parts are being stopped on purpose.
            logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    try:
        await _run(
            settings, scenario, bootstrap, broker_kind, duration, workdir, show, tally, restarts,
            record_url, out, hold,
        )  # fmt: skip
    except Exception as exc:  # whatever went wrong, the summary is printed
        error = str(exc) or type(exc).__name__
        show("FAILED", error)
    return summarise()


async def _run(
    settings: Settings,
    scenario: Scenario,
    bootstrap: Kafka,
    broker_kind: str,
    duration: float,
    workdir: Path,
    show: Printer,
    tally: Tally,
    restarts: Restarts,
    record_url: str | None = None,
    out: TextIO = sys.stdout,
    hold: Callable[[asyncio.Future[None]], Awaitable[None]] | None = None,
) -> None:
    started = time.monotonic()
    deadline = started + duration
    report = await create_topics(
        bootstrap,
        default_partitions=settings.partitions,
        replication_factor=settings.replication_factor,
    )
    show("topics", f"{len(report.created)} created, {len(report.existing)} already there")

    secret = secrets.token_bytes(32)
    receiver = await WebhookReceiver(secret=secret, on_delivery=tally.on_delivery(show)).start()
    show("receiver", f"agencies and commune committees answer at {receiver.base_url}/hooks/<id>")

    run_id = secrets.token_hex(3)
    embedded = broker_kind == "tansu"
    # Every part serves /metrics on a port of its own (the console on its web port).
    ports = {part: free_port() for part in ("worker", "recorder", "dispatcher", "console")}
    rebalance = rebalance_timeout(embedded, settings.rebalance_timeout)
    worker = Child(
        "worker",
        ["worker"],
        {
            "CANHBAO_KAFKA_BOOTSTRAP": str(bootstrap),
            "CANHBAO_AGENCY_WEBHOOK_BASE": receiver.base_url,
            "CANHBAO_APP_ID": settings.app_id if embedded else f"canhbao-demo-{run_id}",
            **(embedded_env() if embedded else {}),
            "CANHBAO_REBALANCE_TIMEOUT": str(rebalance),
            "CANHBAO_DATA_DIR": str(workdir / "data"),
            "CANHBAO_LOG_LEVEL": "warning",
            # Simulated data: every message must say it is an exercise.
            "CANHBAO_EXERCISE": "true",
            "CANHBAO_METRICS_PORT": str(ports["worker"]),
        },
        workdir / "worker.log",
    )
    worker.start()
    show("worker", f"Faust worker started (pid {worker.pid}, log {worker.log})")
    console, announced = _start_console(bootstrap, embedded, rebalance, workdir, ports, show, out)
    recorder = None
    if record_url is not None:
        recorder = await _start_recorder(
            record_url, bootstrap, embedded, rebalance, run_id, workdir, show, ports["recorder"]
        )
    dispatch_group = "canhbao.dispatch.webhook" if embedded else f"canhbao-demo-{run_id}.webhook"
    # The webhook dispatcher runs in this process: its /metrics is this process's.
    lag = metrics.serve(ports["dispatcher"], bootstrap, [dispatch_group])
    for part, port in ports.items():
        show("metrics", f"{part:<10} http://127.0.0.1:{port}/metrics")
    dispatchers: list[Dispatcher] = []

    async def dispatch() -> None:
        # A fresh dispatcher each time: it reads the delivery ledger again.
        dispatcher = WebhookDispatcher(
            WebhookConfig(
                bootstrap=bootstrap,
                # Not the worker's group: Faust's assignor and aiokafka's cannot share one.
                group_id=dispatch_group,
                secret=secret,
                rebalance_timeout_ms=int(rebalance * 1000),
                fetch_max_wait_ms=EMBEDDED_FETCH_MAX_WAIT_MS
                if embedded
                else settings.fetch_max_wait_ms,
            )
        )
        dispatchers.append(dispatcher)
        await dispatcher.run()

    failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    observed = asyncio.Event()
    positions: dict[TopicPartition, int] = {}
    states: set[tuple[str, int]] = set()
    tasks = [
        asyncio.create_task(_supervised("webhook dispatcher", dispatch, restarts, show, failed)),
        asyncio.create_task(
            _supervised(
                "topic reader",
                lambda: _observe(bootstrap, tally, show, observed, positions, states),
                restarts,
                show,
                failed,
            )
        ),
        asyncio.create_task(_flush_deliveries(tally, show)),
        asyncio.create_task(_watch_worker(worker, restarts, show, failed)),
    ]
    if recorder is not None:
        tasks.append(asyncio.create_task(_watch_recorder(recorder, restarts, show, failed)))
    tasks.append(asyncio.create_task(_watch_console(console, restarts, show, failed)))

    async def until(condition: asyncio.Event | asyncio.Task[Any], within: float | None) -> None:
        """Wait for ``condition`` (TimeoutError after ``within`` seconds), unless a part
        of the demo could not be kept alive: then raise why."""
        waiter: asyncio.Future[Any] = (
            asyncio.ensure_future(condition.wait())
            if isinstance(condition, asyncio.Event)
            else condition
        )
        done, _ = await asyncio.wait(
            {waiter, failed}, timeout=within, return_when=asyncio.FIRST_COMPLETED
        )
        if failed in done:
            waiter.cancel()
            failed.result()  # raises why
        if waiter not in done:
            waiter.cancel()
            raise TimeoutError
        waiter.result()

    sink = KafkaSink(bootstrap, linger_ms=1)
    clock = KafkaBroadcaster(bootstrap)
    feed: asyncio.Task[Played] | None = None
    try:
        try:
            await until(observed, 30)
        except TimeoutError:
            raise DemoFailed("the demo could not read the topics in 30 s") from None
        await sink.start()
        await clock.start()
        # The first bad message doubles as a probe: once its dead letter is back, the
        # worker consumes, and the scenario clock may start.
        await sink.send(INGEST_READINGS, b"dap-cau", BAD_INPUT[0])
        tally.sent += 1
        try:
            await until(tally.probe, 90 + restarts.extension)
        except TimeoutError:
            raise DemoFailed(f"the worker did not start in 90 s; see {worker.log}") from None
        # The console reads the warnings from the start of the scenario: whoever opens
        # it sees them arrive live.
        await until(announced, None)
        feed_window = max(8.0, deadline - time.monotonic() - SETTLE_RESERVE)
        speed = scenario.duration.total_seconds() / feed_window
        start = datetime.now(UTC)
        items = _with_bad_input(schedule(scenario, start, speed))
        tally.scenario_start = align(start)
        tally.scenario = {
            "name": scenario.name,
            "hours": round(scenario.duration.total_seconds() / 3600, 2),
            "speed": round(speed, 1),
        }
        n_readings = sum(1 for o in items if o.kind == "reading")
        n_reports = sum(1 for o in items if o.kind == "report")
        show(
            "feed",
            f"{scenario.name}: {n_readings} readings and {n_reports} reports, "
            f"{_span(scenario)} of scenario time in {feed_window:.0f} s ({speed:.0f}×)",
        )

        def sent(p: Played) -> None:
            tally.sent = 1 + p.readings + p.raw
            tally.reports_sent = p.reports
            if p.last is not None and p.last.scenario_at is not None:
                tally.scenario_now = p.last.scenario_at
            tally.progress(show)

        feed = asyncio.create_task(play(items, sink, clock, on_sent=sent))
        # The feed goes on while the worker is down: Kafka keeps what it sends.
        await until(feed, None)
        # Drain: wait until every reading is accounted for and every notification
        # has a final receipt, or the time (and a little grace) is up.
        hard_stop = max(deadline, time.monotonic() + 5.0) + GRACE
        while time.monotonic() < hard_stop + restarts.extension:
            if failed.done():
                failed.result()
            quiet = time.monotonic() - tally.last_event
            settled = (
                tally.ingested + tally.rejected >= tally.sent
                and tally.notifications > 0
                and tally.delivered + tally.failed >= tally.notifications
            )
            if settled and quiet > 1.5 and worker.dead() is None:
                break
            tally.progress(show)
            await asyncio.sleep(0.2)
        if tally.ingested + tally.rejected < tally.sent:
            show("timeout", f"{tally.sent - tally.ingested - tally.rejected} readings still queued")
        if hold is not None:
            tally.flush_deliveries(show)
            await hold(failed)
            # No part is started again from here: a child that Ctrl-C reached
            # directly has stopped as asked.
            for task in tasks[1:]:
                task.cancel()
    finally:
        announced.cancel()
        if feed is not None and not feed.done():
            feed.cancel()
        for stopping in (sink.stop(), clock.stop()):
            with contextlib.suppress(Exception):
                await stopping
        for dispatcher in dispatchers:
            dispatcher.stop()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(tasks[0], 15)  # cancelled if it takes longer
        for task in tasks[1:]:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if failed.done():
            failed.exception()  # seen: the demo is over either way
        tally.flush_deliveries(show)
        if recorder is not None and record_url is not None:
            await _record_settles(
                recorder, record_url, _record_group(embedded, run_id), bootstrap, show
            )
        if lag is not None:
            await asyncio.to_thread(lag.stop)
        await asyncio.get_running_loop().run_in_executor(None, console.stop, 15.0)
        await asyncio.get_running_loop().run_in_executor(None, worker.stop, 15.0)
        await receiver.stop()


def _record_group(embedded: bool, run_id: str) -> str:
    # One group per run, also on the embedded broker: offsets a database kept from an
    # earlier demo belong to a broker that is gone, and would skip this run's records.
    return f"canhbao-demo-{run_id}.record"


async def _start_recorder(
    url: str,
    bootstrap: Kafka,
    embedded: bool,
    rebalance: float,
    run_id: str,
    workdir: Path,
    show: Printer,
    metrics_port: int = 0,
) -> Child:
    """``canhbao record`` as one more child, on a migrated database."""
    from recorder import migrate
    from recorder.store import connect

    engine = connect(url)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    recorder = Child(
        "recorder",
        ["record"],
        {
            "CANHBAO_KAFKA_BOOTSTRAP": str(bootstrap),
            "CANHBAO_DATABASE_URL": url,
            "CANHBAO_RECORD_GROUP_ID": _record_group(embedded, run_id),
            **(embedded_env() if embedded else {}),
            "CANHBAO_REBALANCE_TIMEOUT": str(rebalance),
            "CANHBAO_LOG_LEVEL": "warning",
            "CANHBAO_METRICS_PORT": str(metrics_port),
        },
        workdir / "recorder.log",
    )
    recorder.start()
    show("record", f"canhbao record started (pid {recorder.pid}, log {recorder.log}) "
         f"into {migrate.safe_url(url)}")  # fmt: skip
    return recorder


def _start_console(
    bootstrap: Kafka,
    embedded: bool,
    rebalance: float,
    workdir: Path,
    ports: dict[str, int],
    show: Printer,
    out: TextIO,
) -> tuple[Child, asyncio.Task[None]]:
    """``canhbao console`` as one more child, with the demo's accounts, and the task
    that prints its address and the accounts, each on its own line, once it answers
    (it starts beside the worker, not after it)."""
    db = workdir / "data" / "console.db"
    accounts = make_accounts(db)
    port = ports["console"]
    console = console_child(str(bootstrap), embedded, rebalance, db, port, workdir / "console.log")
    console.start()
    show("console", f"canhbao console started (pid {console.pid}, log {console.log})")

    async def announce() -> None:
        if not await wait_until_answers(f"http://127.0.0.1:{port}/healthz", 60, console):
            show("console", f"the console does not answer yet; see {console.log}")
        print(f"console: http://127.0.0.1:{port}/", file=out, flush=True)
        for account in accounts:
            print(account.line(), file=out, flush=True)

    return console, asyncio.create_task(announce())


async def _watch_console(
    console: Child, restarts: Restarts, show: Printer, failed: asyncio.Future[None]
) -> None:
    """Start the console again whenever it dies (it reads the topics again)."""
    await _keep_alive(
        console, "console", restarts, show, failed,
        lambda c: ("console", f"canhbao console started again (pid {c.pid})"),
    )  # fmt: skip


async def _watch_recorder(
    recorder: Child, restarts: Restarts, show: Printer, failed: asyncio.Future[None]
) -> None:
    """Start the recorder again whenever it dies (it resumes from its database)."""
    await _keep_alive(
        recorder, "recorder", restarts, show, failed,
        lambda r: ("record", f"canhbao record started again (pid {r.pid})"),
    )  # fmt: skip


async def _record_settles(
    recorder: Child, url: str, group: str, bootstrap: Kafka, show: Printer
) -> None:
    """Let the recorder write what the topics hold, then stop it."""
    from recorder.service import behind
    from recorder.store import Store

    store = Store.open(url)
    try:
        left: list[str] = []
        before: dict[tuple[str, int], int] | None = None
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline and recorder.dead() is None:
            left = await behind(bootstrap, store, group)
            now = await store.offsets(group)
            if not left and now == before:  # and nothing more came in the last moment
                break
            before = now
            await asyncio.sleep(0.5)
        if left:
            show("record", f"the recorder had not recorded all of {', '.join(left)}")
    except Exception as exc:  # the demo's summary comes first
        show("record", f"could not tell whether the record is complete: {exc}")
    finally:
        await store.close()
        await asyncio.get_running_loop().run_in_executor(None, recorder.stop, 15.0)


def _record_text(url: str) -> str:
    from recorder.migrate import safe_url

    if url.startswith("sqlite+aiosqlite:///"):
        path = url.removeprefix("sqlite+aiosqlite:///")
        return (
            f"The threat record of this run: {path}\n"
            f"  CANHBAO_DATABASE_URL={url} canhbao history warnings"
        )
    return f"The threat record of this run: {safe_url(url)} (canhbao history warnings)"


def _span(scenario: Scenario) -> str:
    hours = scenario.duration.total_seconds() / 3600
    return f"{hours / 24:g} days" if hours >= 48 else f"{hours:g} h"


def run_demo(
    settings: Settings,
    duration: float = 45.0,
    as_json: bool = False,
    scenario: str = DEFAULT,
    serve: bool = False,
) -> int:
    out = sys.stderr if as_json else sys.stdout
    chosen = get(scenario)
    workdir = Path(tempfile.mkdtemp(prefix="canhbao-demo-"))
    broker: EmbeddedBroker | None = None
    print(f"Scenario {chosen.name}: {chosen.summary_vi}\n  ({chosen.summary_en})", file=out)
    bootstrap: Kafka
    if settings.kafka_bootstrap:
        bootstrap, kind = settings.kafka_connection(), "kafka"
        print(f"Using the Kafka cluster at {bootstrap}", file=out)
    else:
        broker = EmbeddedBroker(log_path=workdir / "tansu.log").start()
        bootstrap, kind = broker.bootstrap, "tansu"
        print(f"Embedded Tansu broker on {bootstrap} (memory only: nothing kept on disk)", file=out)
    # The demo's threat record: the configured database, else a fresh SQLite file.
    record_url = (
        settings.record_url()
        if settings.database_url is not None
        else f"sqlite+aiosqlite:///{workdir / 'record.db'}"
    )
    reported = False

    def report(summary: dict[str, Any]) -> None:
        nonlocal reported
        reported = True
        if as_json:
            print(json.dumps(summary, ensure_ascii=False), flush=True)
        else:
            print(summary_text(summary) + restarts_text(summary), file=out, flush=True)
        print(_record_text(record_url), file=out, flush=True)

    try:
        summary = asyncio.run(
            _demo(
                settings,
                chosen,
                bootstrap,
                kind,
                duration,
                out,
                workdir,
                record_url,
                report if serve else None,
            )
        )
    finally:
        if broker is not None:
            broker.stop()
    ok = summary["warnings"]["total"] > 0 and summary["deliveries"]["ok"] > 0
    if not reported:  # with --serve, printed when the scenario ended
        report(summary)
    if "error" in summary:
        print(f"The demo stopped early: {summary['error']}; logs are in {workdir}", file=sys.stderr)
        return 1
    if not ok:
        print(f"The demo did not deliver a warning; logs are in {workdir}", file=sys.stderr)
    return 0 if ok else 1


def restarts_text(summary: dict[str, Any]) -> str:
    """The summary's line about parts started again, if any were."""
    why = summary["restarts"]["why"]
    return f"\n  restarts    {'; '.join(why)}" if why else ""
