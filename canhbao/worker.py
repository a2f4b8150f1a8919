"""Run the Faust worker (validate → evaluate → route) in the foreground."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from alerting.audiences import Audiences
from alerting.directory import Directory
from alerting.routes import load_routing
from canhbao import metrics
from canhbao.settings import Settings
from pipeline.rules.loader import RuleSet, load_rules
from pipeline.validate import TimePolicy
from pipeline.worker.config import WorkerConfig
from pipeline.worker.stages.control import rules_on_topic
from topics.admin import create_topics
from topics.connection import Kafka
from topics.metrics import Metrics

log = logging.getLogger(__name__)


def worker_config(settings: Settings) -> WorkerConfig:
    """The worker's configuration from ``settings``, its files loaded (the directory,
    the audiences, the routing tree: loaded once and shared, the subscriber lists can
    be large)."""
    directory = Directory.load(settings.geography_path, settings.directory_path)
    return WorkerConfig(
        app_id=settings.app_id,
        partitions=settings.partitions,
        replication_factor=settings.replication_factor,
        group_instance_id=settings.group_instance_id,
        rebalance_timeout=settings.rebalance_timeout,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        batch_size=settings.batch_size,
        batch_wait=settings.batch_wait,
        tick_interval=settings.tick_interval,
        data_dir=settings.data_dir / "worker" / settings.app_id,
        exercise=settings.exercise,
        max_clock_skew=timedelta(seconds=settings.max_clock_skew),
        time_policy=TimePolicy(
            max_skew=timedelta(seconds=settings.max_clock_skew),
            max_lateness=timedelta(seconds=settings.max_lateness),
            earliest=settings.earliest_observed_at,
        ),
        directory=directory,
        audiences=Audiences.load(settings.audiences_path),
        routing=load_routing(settings.routes_path),
    )


async def initial_rules(settings: Settings, bootstrap: Kafka) -> RuleSet:
    """The set last applied to the cluster; the rule files when none was applied yet."""
    # The last set there that compiles: a refused record last on the topic (poison, a
    # set that does not compile) is skipped, as the running workers skipped it.
    applied = await rules_on_topic(bootstrap)
    if applied is not None:
        log.warning("rules: active version %s from %s", applied[1].version, "the control topic")
        return applied[1]
    rules = load_rules(settings.rules_path)
    log.warning("rules: version %s from %s", rules.version, settings.rules_path)
    return rules


def run_worker(settings: Settings, bootstrap: Kafka) -> None:
    from pipeline.worker.app import build_app
    from pipeline.worker.faust_fixes import QuietWorker, check_versions

    check_versions()  # before anything touches the cluster

    async def prepare() -> RuleSet:
        # Topics first, with the catalogue's partitions and cleanup policies, so
        # that Faust never auto-creates one with broker defaults.
        await create_topics(
            bootstrap,
            default_partitions=settings.partitions,
            replication_factor=settings.replication_factor,
            min_insync_replicas=settings.min_insync_replicas,
        )
        return await initial_rules(settings, bootstrap)

    config = worker_config(settings)
    rules = asyncio.run(prepare())
    asyncio.set_event_loop(asyncio.new_event_loop())
    app = build_app(config, bootstrap, rules, Metrics.default())
    # The worker's two groups: the validate stage's and the Faust app's.
    metrics.serve(
        settings.metrics_port, bootstrap, [f"{settings.app_id}.validate", settings.app_id]
    )
    worker = QuietWorker(app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()
