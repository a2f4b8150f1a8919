"""Run the Faust worker (validate → evaluate → route) in the foreground."""

from __future__ import annotations

import asyncio
import logging

from canhbao import control, metrics
from canhbao.settings import Settings
from pipeline.rules.loader import RuleError, RuleSet, compile_rules, load_rules
from topics.admin import create_topics

log = logging.getLogger(__name__)


async def initial_rules(settings: Settings, bootstrap: str) -> RuleSet:
    """The set last applied to the cluster; the rule files when none was applied yet."""
    doc = await control.latest(bootstrap)
    if doc is not None:
        try:
            rules = compile_rules(doc.sources)
            log.warning("rules: active version %s from %s", rules.version, "the control topic")
            return rules
        except RuleError as exc:
            log.error("rules: the applied set %s does not compile here: %s", doc.version, exc)
    rules = load_rules(settings.rules_path)
    log.warning("rules: version %s from %s", rules.version, settings.rules_path)
    return rules


def run_worker(settings: Settings, bootstrap: str) -> None:
    import faust

    from pipeline.app import build_app

    async def prepare() -> RuleSet:
        # Topics first, with the catalogue's partitions and cleanup policies, so
        # that Faust never auto-creates one with broker defaults.
        await create_topics(
            bootstrap,
            default_partitions=settings.partitions,
            replication_factor=settings.replication_factor,
        )
        return await initial_rules(settings, bootstrap)

    rules = asyncio.run(prepare())
    asyncio.set_event_loop(asyncio.new_event_loop())
    app = build_app(settings, bootstrap, rules)
    metrics.serve(settings.metrics_port)

    class Worker(faust.Worker):
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            # No terminal spinner: Faust's sets the root logger to DEBUG so that it
            # can spin on every record, which makes every debug call in aiokafka and
            # Faust build a log record nobody reads (a few % of the worker's CPU).
            self.spinner = None

    worker = Worker(app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()
