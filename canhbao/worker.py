"""Run the Faust worker (validate → evaluate → route) in the foreground."""

from __future__ import annotations

import asyncio
import logging

from canhbao import metrics
from canhbao.settings import Settings
from topics.admin import create_topics

log = logging.getLogger(__name__)


def run_worker(settings: Settings, bootstrap: str) -> None:
    import faust

    from pipeline.app import build_app

    # Topics first, with the catalogue's partitions and cleanup policies, so that
    # Faust never auto-creates one with broker defaults.
    asyncio.run(
        create_topics(
            bootstrap,
            default_partitions=settings.partitions,
            replication_factor=settings.replication_factor,
        )
    )
    asyncio.set_event_loop(asyncio.new_event_loop())
    app = build_app(settings, bootstrap)
    metrics.serve(settings.metrics_port)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()
