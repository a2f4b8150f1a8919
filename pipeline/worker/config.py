"""What the worker needs, already loaded: the command line builds it from its settings
(``canhbao.worker.worker_config``); nothing in the worker reads the environment or a
configuration file."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from alerting.audiences import Audiences
from alerting.directory import Directory
from alerting.routes import RoutingConfig
from pipeline.validate import TimePolicy


@dataclass(frozen=True)
class WorkerConfig:
    """One worker's configuration (the README's configuration table names the
    ``CANHBAO_*`` setting behind each field)."""

    app_id: str
    partitions: int
    replication_factor: int
    group_instance_id: str | None
    rebalance_timeout: float  # seconds
    fetch_max_wait_ms: int
    batch_size: int
    batch_wait: float  # seconds
    tick_interval: float  # seconds
    #: Faust's data directory for this app id (created by ``build_app``).
    data_dir: Path
    exercise: bool
    #: How far ahead of the wall clock the engine takes a reading's time.
    max_clock_skew: timedelta
    #: The validate stage's bounds on a message's time.
    time_policy: TimePolicy
    directory: Directory
    audiences: Audiences
    routing: RoutingConfig
