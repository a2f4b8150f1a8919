"""File replay (``canhbao feed replay``): recorded history back onto the ingest topic.

Files are CSV in the backtest format (``observed_at,station_id,metric,value`` and
optional ``domain``, ``area``, ``source``, ``unit`` columns; a row without a domain
takes ``--domain`` or the domain of the rules that watch its metric) or JSONL of
``Reading``. All files are merged and played in time order.

Time compression: ``--speed 3600`` plays one hour of history per second, ``--speed 0``
(the default) as fast as the broker takes it.

``--shift-to-now`` is for drills: the first reading is stamped with the time the replay
starts and every later one keeps its original distance from it, so rates of rise,
windows and the quality gate see the same series as in the original. The gaps are
compressed only in wall time: at ``--speed`` above 1 the stamps run ahead of the clock,
so each reading carries the drill's clock (``drill``) and the pipeline judges its time
against that clock. (Stamping each reading with its compressed send time instead would
make a 15-minute rise look like a jump within seconds.)

Without it the original stamps are kept, and each reading is judged as the pipeline's
validate stage judges it (:mod:`pipeline.validate`): readings older than the live
lateness bound (``CANHBAO_MAX_LATENESS``) are history and are not sent, since the
live pipeline never evaluates history (``canhbao rules backtest`` does, paging nobody);
nor are readings dated ahead of the clock, implausibly old, or from stations and
communes the geography does not know. The replay says how many, and why.

A line that cannot be read is reported as ``file:line: reason`` and skipped; the
replay goes on, and the command exits 1 at the end, as it does when readings were
not sent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from alerting.directory import Directory
    from feeds.sink import Sink
    from pipeline.history import History
    from pipeline.validate import TimePolicy
    from topics.models import Domain, Reading

BATCH = 500
FEED = "replay"


@dataclass(frozen=True)
class Planned:
    due: float  # seconds after the start of the replay
    reading: Reading  # as it is sent (shifted, when asked)


# A CSV row without a domain, in this command's terms.
NO_DOMAIN_HINT = "add a domain column or --domain, or a rule that watches it"


def read_history(
    paths: Iterable[Path],
    domains: Mapping[str, Domain] | None = None,
    default: Domain | None = None,
) -> History:
    """Every reading in ``paths``, and every line that could not be read
    (:mod:`pipeline.history`, as ``canhbao rules backtest`` reads them)."""
    from pipeline.history import read_history

    return read_history(paths, domains, default, no_domain_hint=NO_DOMAIN_HINT)


def plan(
    readings: Iterable[Reading], speed: float, shift_to: datetime | None = None
) -> list[Planned]:
    """When each reading goes out (seconds after the start) and how it is stamped.

    Shifted (a drill), each reading carries the drill's clock: the first reading's
    time at ``shift_to``, running ``speed`` times as fast."""
    from topics.models import DrillClock

    if speed < 0:
        raise ValueError("speed must be 0 (as fast as possible) or positive")
    if shift_to is not None and not speed:
        raise ValueError("a drill (--shift-to-now) needs a --speed: its clock runs at it")
    ordered = sorted(readings, key=lambda r: r.observed_at)  # stable: ties keep file order
    if not ordered:
        return []
    t0 = ordered[0].observed_at
    shift = shift_to - t0 if shift_to is not None else None
    drill = DrillClock(origin=shift_to, start=shift_to, speed=speed) if shift_to else None
    out = []
    for r in ordered:
        span = (r.observed_at - t0).total_seconds()
        if shift is not None:
            r = r.model_copy(update={"observed_at": r.observed_at + shift, "drill": drill})
        out.append(Planned(span / speed if speed else 0.0, r))
    return out


@dataclass
class Screened:
    """What the pipeline would take, and what it would refuse (count by reason, and the
    first few examples of each)."""

    kept: list[Reading] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def lines(self, policy: TimePolicy) -> list[str]:
        """What to tell the user, one line per reason."""
        from pipeline.validate import span

        meaning = {
            "historical": f"older than the live lateness bound ({span(policy.max_lateness)}): "
            "not sent; history never raises a live warning (evaluate it with "
            "canhbao rules backtest --data FILE)",
            "future": f"dated more than {span(policy.max_skew)} ahead of the clock: not sent",
            "implausible": f"dated before {policy.earliest.date()}: not sent",
        }
        out = []
        for code, n in sorted(self.refused.items()):
            why = meaning.get(code, f"refused ({code}): not sent")
            out.append(f"{n} readings {why}; e.g. {self.examples[code][0]}")
        return out


def screen(
    readings: Iterable[Reading],
    *,
    now: datetime | None,
    policy: TimePolicy,
    directory: Directory | None,
) -> Screened:
    """The validate stage's judgement of each reading, before anything is sent: what it
    would refuse is not sent at all (and so cannot page anyone)."""
    from pipeline.validate import judge_reading

    out = Screened()
    for r in readings:
        refused = judge_reading(r, now=now, policy=policy, directory=directory)
        if refused is None:
            out.kept.append(r)
            continue
        code = refused.code.value
        out.refused[code] += 1
        seen = out.examples.setdefault(code, [])
        if len(seen) < 3:
            example = f"{r.station_id} {r.metric} at {r.observed_at.isoformat()}"
            timely = code in ("historical", "future", "implausible")  # said once per line
            seen.append(example if timely else f"{example}: {refused.reason}")
    return out


def _message(r: Reading) -> tuple[str, bytes | None, bytes]:
    from topics.catalogue import INGEST_READINGS

    return INGEST_READINGS, r.station_id.encode(), r.to_bytes()


async def replay(
    planned: list[Planned],
    sink: Sink,
    *,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], Awaitable[Any]] | None = None,
    batch: int = BATCH,
    on_batch: Callable[[float, list[Planned]], None] | None = None,
) -> int:
    """Send ``planned`` through ``sink`` on schedule; readings that are due together go
    in one batch. ``clock`` (monotonic seconds) and ``sleep`` are injectable for tests."""
    import asyncio
    import time

    clock = clock or time.monotonic
    sleep = sleep or asyncio.sleep
    start = clock()
    i = 0
    while i < len(planned):
        wait = planned[i].due - (clock() - start)
        if wait > 0:
            await sleep(wait)
        now = clock() - start
        j = i + 1  # at least one, even when sleep woke a hair early
        while j < len(planned) and j - i < batch and planned[j].due <= now:
            j += 1
        chunk = planned[i:j]
        await sink.send_many([_message(p.reading) for p in chunk])
        if on_batch is not None:
            on_batch(now, chunk)
        i = j
    return len(planned)


def print_plan(planned: list[Planned], out: TextIO) -> None:
    """What a dry run shows: when each reading would go, where, and exactly what."""
    for p in planned:
        topic, key, value = _message(p.reading)
        print(f"{p.due:+11.3f}s  {topic}  key={(key or b'').decode()}  {value.decode()}", file=out)
