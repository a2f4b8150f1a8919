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
import io
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
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
        rows = _jsonl(path, text, total, progress)
    else:
        rows = _csv(path, text, domains or {}, default, no_domain_hint, total, progress)
    yield from rows
    if progress:
        progress(total, total)


def _jsonl(
    path: Path, text: str, total: int, progress: Progress | None
) -> Iterator[Reading | BadLine]:
    for n, line in enumerate(text.splitlines(), start=1):
        if progress and n % PROGRESS_EVERY == 0:
            progress(n, total)
        if not line.strip():
            continue
        try:
            yield Reading.model_validate_json(line)
        except ValidationError as exc:
            yield BadLine(path, n, "; ".join(field_errors(exc)))


def _csv(
    path: Path,
    text: str,
    domains: Mapping[str, Domain],
    default: Domain | None,
    no_domain_hint: str,
    total: int,
    progress: Progress | None,
) -> Iterator[Reading | BadLine]:
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise MissingColumns(path, missing)
    for row in reader:
        line = reader.line_num  # the physical line, right even after a quoted newline
        if progress and line % PROGRESS_EVERY == 0:
            progress(line, total)
        metric = row["metric"]
        domain = row.get("domain") or default or domains.get(metric)
        if domain is None:
            yield BadLine(path, line, f"no domain for metric {metric!r}: {no_domain_hint}")
            continue
        try:
            yield Reading(
                station_id=row["station_id"],
                domain=domain,
                metric=metric,
                value=row["value"],
                observed_at=row["observed_at"],
                unit=row.get("unit") or None,
                area=row.get("area") or None,
                source=row.get("source") or None,
            )
        except ValidationError as exc:
            yield BadLine(path, line, "; ".join(field_errors(exc)))


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
