"""The engine alone: the worker phase's readings through ``Engine.on_reading`` in one
process, with a dict for the state store and no broker.

Readings are decoded before the clock starts (decoding is the worker's cost, not the
engine's) and run as the worker runs them: ``station`` mode, then ``grouped`` for each
reading it forwards to a commune, province or source rule, with the wall clock as
``now``. The difference between this figure and the pipeline's is what lies outside
the rules: Kafka hops, Faust, state changelogs, encoding."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from alerting.directory import Directory
from pipeline.engine import Engine
from pipeline.rules.loader import load_rules
from topics.models import Reading


def engine_rate(
    rules_path: Path, geography: Path, directory_path: Path, messages: list[tuple[bytes, bytes]]
) -> float:
    """Readings/s through the engine, every rule under ``rules_path`` active."""
    engine = Engine(load_rules(rules_path), Directory.load(geography, directory_path))
    readings = [Reading.model_validate_json(value) for _, value in messages]
    started = time.perf_counter()
    evaluate(engine, readings, datetime.now(UTC))
    elapsed = time.perf_counter() - started
    return len(readings) / elapsed if elapsed > 0 else float("inf")


def evaluate(engine: Engine, readings: list[Reading], now: datetime) -> dict[str, object]:
    """Every reading through the engine as the worker runs it; the store at the end."""
    store: dict[str, object] = {}
    for reading in readings:
        out = engine.on_reading(reading, store, now=now, mode="station")
        for key, forwarded in out.forwards:
            engine.on_reading(forwarded, store, now=now, mode="grouped", key=key)
    return store
