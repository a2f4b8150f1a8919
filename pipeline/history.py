"""Recorded history read into readings: the one loader behind ``canhbao rules
backtest`` and ``canhbao feed replay``.

A file is CSV (``observed_at,station_id,metric,value`` with ISO-8601 times carrying an
offset; optional ``domain``, ``area``, ``source``, ``unit`` columns) or JSONL of
``Reading`` (by its suffix ``.jsonl``/``.ndjson``, or a first line that is a JSON
object). A CSV row without a domain takes the caller's default, else the domain of the
rules that watch its metric.

A line that cannot be read becomes a :class:`BadLine` (``file:line: reason``, the
physical line, right even after a quoted newline) and the rest is still read. A CSV
without the needed columns is refused whole (:class:`MissingColumns`).
"""

from __future__ import annotations

import csv
import heapq
import io
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from pipeline.rules.loader import RuleSet
from topics.errors import field_errors
from topics.models import Domain, Reading

CSV_COLUMNS = ("observed_at", "station_id", "metric", "value")
PROGRESS_EVERY = 1000  # lines between two calls of a progress callback
# What a row without a domain is told when neither a default nor a rule gives one.
NO_DOMAIN_HINT = "add a domain column, or a rule that watches it"

Progress = Callable[[int, int], None]  # (lines read, lines in the file)


@dataclass(frozen=True)
class BadLine:
    path: Path
    line: int  # 0: the file itself
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


class MissingColumns(ValueError):
    """A CSV file without the columns every row needs: nothing in it can be read."""

    def __init__(self, path: Path, missing: list[str]) -> None:
        self.path = path
        self.reason = f"CSV needs columns {', '.join(CSV_COLUMNS)}; missing {missing}"
        super().__init__(f"{path}: {self.reason}")


@dataclass
class History:
    readings: list[Reading] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)


def is_jsonl(path: Path, text: str) -> bool:
    return path.suffix in (".jsonl", ".ndjson") or text.lstrip().startswith("{")


class OutOfOrder(ValueError):
    """A reading older than one before it, in a file that must be in time order."""

    def __init__(self, path: Path, line: int, at: datetime, latest: datetime) -> None:
        self.path, self.line, self.at, self.latest = path, line, at, latest
        super().__init__(
            f"{path}:{line}: observed at {at.isoformat()}, before a reading above it "
            f"({latest.isoformat()}): the file is not in time order"
        )


def parse(
    path: Path,
    text: str,
    domains: Mapping[str, Domain] | None = None,
    default: Domain | None = None,
    *,
    no_domain_hint: str = NO_DOMAIN_HINT,
    progress: Progress | None = None,
) -> Iterator[Reading | BadLine]:
    """The readings of one file's ``text``, in file order, with a :class:`BadLine` for
    each line that cannot be read. Raises :class:`MissingColumns` (before yielding
    anything) for a CSV without the needed columns."""
    total = text.count("\n") or 1
    if is_jsonl(path, text):
        rows = _jsonl(path, text.splitlines(), total, progress)
    else:
        rows = _csv(path, io.StringIO(text), domains or {}, default, no_domain_hint, total,
                    progress)  # fmt: skip
    for _, item in rows:
        yield item
    if progress:
        progress(total, total)


def stream(
    path: Path,
    domains: Mapping[str, Domain] | None = None,
    default: Domain | None = None,
    *,
    no_domain_hint: str = NO_DOMAIN_HINT,
    progress: Progress | None = None,
    ordered: bool = False,
) -> Iterator[Reading | BadLine]:
    """:func:`parse` for a file of any length: read a line at a time as the caller
    consumes it, never the whole file. ``ordered``: raise :class:`OutOfOrder` at the
    first reading dated before one above it (a backtest replays in time order).

    Raises ``OSError``/``UnicodeDecodeError`` for a file that cannot be read and
    :class:`MissingColumns` for a CSV without the needed columns, at the first
    ``next()``."""
    total = count_lines(path) if progress else 1
    with path.open(encoding="utf-8", newline="") as f:
        head = f.read(4096)
        f.seek(0)
        if is_jsonl(path, head):
            rows = _jsonl(path, f, total, progress)
        else:
            rows = _csv(path, f, domains or {}, default, no_domain_hint, total, progress)
        latest: datetime | None = None
        latest_ts = float("-inf")
        for line, item in rows:
            if ordered and isinstance(item, Reading):
                # Compared as seconds: a parsed time's offset makes datetime compares slow.
                ts = item.observed_at.timestamp()
                if ts < latest_ts:
                    assert latest is not None
                    raise OutOfOrder(path, line, item.observed_at, latest)
                latest, latest_ts = item.observed_at, ts
            yield item
    if progress:
        progress(total, total)


SORT_CHUNK = 100_000  # readings sorted in memory at a time by sort_by_time (~125 MB)


def sort_by_time(
    path: Path,
    into: Path,
    domains: Mapping[str, Domain] | None = None,
    default: Domain | None = None,
    *,
    no_domain_hint: str = NO_DOMAIN_HINT,
    progress: Progress | None = None,
    on_bad: Callable[[BadLine], None] | None = None,
    chunk: int = SORT_CHUNK,
) -> Path:
    """The readings of ``path`` written to a JSONL file in ``into``, in time order (a
    stable sort: readings of the same time keep their file order), without holding
    more than ``chunk`` of them: each chunk is sorted and written apart, then the
    chunks are merged. Lines that cannot be read go to ``on_bad``."""
    runs: list[Path] = []
    buffer: list[tuple[float, Reading]] = []

    def spill() -> None:
        buffer.sort(key=lambda x: x[0])  # stable: file order among equal times
        run = into / f"run-{len(runs):05d}.jsonl"
        with run.open("w", encoding="utf-8") as f:
            f.writelines(f"{ts!r}\t{r.model_dump_json()}\n" for ts, r in buffer)
        runs.append(run)
        buffer.clear()

    items = stream(path, domains, default, no_domain_hint=no_domain_hint, progress=progress)
    for item in items:
        if isinstance(item, BadLine):
            if on_bad:
                on_bad(item)
            continue
        buffer.append((item.observed_at.timestamp(), item))
        if len(buffer) >= chunk:
            spill()
    if buffer or not runs:
        spill()
    out = into / "sorted.jsonl"
    files = [run.open(encoding="utf-8") for run in runs]
    try:
        # Runs in file order and merge() prefers the earlier run on a tie: stable overall.
        merged = heapq.merge(*files, key=lambda line: float(line.split("\t", 1)[0]))
        with out.open("w", encoding="utf-8") as f:
            f.writelines(line.split("\t", 1)[1] for line in merged)
    finally:
        for opened in files:
            opened.close()
        for run in runs:
            run.unlink()
    return out


def count_lines(path: Path) -> int:
    """Lines in ``path``, read in blocks (for a progress bar; memory does not grow)."""
    n = 0
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            n += block.count(b"\n")
    return n or 1


def _jsonl(
    path: Path, lines: Iterable[str], total: int, progress: Progress | None
) -> Iterator[tuple[int, Reading | BadLine]]:
    for n, line in enumerate(lines, start=1):
        if progress and n % PROGRESS_EVERY == 0:
            progress(n, total)
        if not line.strip():
            continue
        try:
            yield n, Reading.model_validate_json(line)
        except ValidationError as exc:
            yield n, BadLine(path, n, "; ".join(field_errors(exc)))


# An ISO-8601 time with an offset in the one spelling both Python and pydantic read
# alike: such a time is parsed here (see ``_observed_at``); any other goes to pydantic.
_PLAIN_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})"
)


def _observed_at(text: str) -> datetime | str:
    """A CSV row's time as a datetime whose offset is Python's own ``timezone``, when
    it is plainly spelled and valid; otherwise the text, for pydantic to judge (and
    refuse with its own words). The same instant either way, but pydantic's offset
    object makes each later conversion to seconds or comparison cost about a
    microsecond, and a backtest does several per reading."""
    if _PLAIN_TIME.fullmatch(text):
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    return text


def _csv(
    path: Path,
    lines: Iterable[str],
    domains: Mapping[str, Domain],
    default: Domain | None,
    no_domain_hint: str,
    total: int,
    progress: Progress | None,
) -> Iterator[tuple[int, Reading | BadLine]]:
    # csv.reader and column positions, not DictReader: a dict per row cost more
    # than the rest of the parsing. A row shorter than the header has None for the
    # columns it lacks, and a repeated column name means its last column, as in
    # DictReader.
    reader = csv.reader(lines)
    header = next(reader, None)
    missing = [c for c in CSV_COLUMNS if c not in (header or [])]
    if missing:
        raise MissingColumns(path, missing)
    assert header is not None
    at = {name: i for i, name in enumerate(header)}
    i_time, i_station, i_metric, i_value = (at[c] for c in CSV_COLUMNS)
    i_domain, i_unit, i_area, i_source = (at.get(c) for c in ("domain", "unit", "area", "source"))

    def cell(row: list[str], i: int | None) -> str | None:
        return row[i] if i is not None and i < len(row) else None

    for row in reader:
        if not row:
            continue  # a blank line (DictReader skipped them too)
        line = reader.line_num  # the physical line, right even after a quoted newline
        if progress and line % PROGRESS_EVERY == 0:
            progress(line, total)
        n = len(row)
        metric = row[i_metric] if i_metric < n else None
        domain = cell(row, i_domain) or default or domains.get(metric)  # type: ignore[arg-type]
        if domain is None:
            yield line, BadLine(path, line, f"no domain for metric {metric!r}: {no_domain_hint}")
            continue
        observed = row[i_time] if i_time < n else None
        try:
            yield (
                line,
                Reading(
                    station_id=row[i_station] if i_station < n else None,
                    domain=domain,
                    metric=metric,
                    value=row[i_value] if i_value < n else None,
                    observed_at=_observed_at(observed) if observed is not None else None,
                    unit=cell(row, i_unit) or None,
                    area=cell(row, i_area) or None,
                    source=cell(row, i_source) or None,
                ),
            )
        except ValidationError as exc:
            yield line, BadLine(path, line, "; ".join(field_errors(exc)))


def read_history(
    paths: Iterable[Path],
    domains: Mapping[str, Domain] | None = None,
    default: Domain | None = None,
    *,
    no_domain_hint: str = NO_DOMAIN_HINT,
) -> History:
    """Every reading in ``paths`` and every line that could not be read; a file that
    cannot be read at all, or a CSV without the needed columns, is one bad line."""
    out = History()
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            out.bad.append(BadLine(path, 0, f"cannot read: {exc}"))
            continue
        try:
            for r in parse(path, text, domains, default, no_domain_hint=no_domain_hint):
                if isinstance(r, BadLine):
                    out.bad.append(r)
                else:
                    out.readings.append(r)
        except MissingColumns as exc:
            out.bad.append(BadLine(path, 1, exc.reason))
    return out


def rule_domains(rules: RuleSet) -> dict[str, Domain]:
    """metric -> domain of the rules that watch one metric (for CSV rows without one)."""
    return {r.selector.metric: r.domain for r in rules.rules if r.selector.metric}
