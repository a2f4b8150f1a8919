"""Load rule files (YAML) with errors that name the file, the rule and the field.

A rule set is compiled from *sources*: a mapping of file name to text. Files
on disk are read into sources; ``canhbao rules apply`` publishes the same
sources to the control topic, and every worker compiles them with this code,
so what was checked is exactly what runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.quality import QualityConfig
from pipeline.rules.kinds import Baseline
from pipeline.rules.model import CompoundCondition, EndemicCondition, Rule
from topics import yamlio
from topics.models import Reading

RULE_SUFFIXES = (".yaml", ".yml")
TEST_SUFFIXES = (".test.yaml", ".test.yml")


class RuleError(ValueError):
    """One or more problems in rule files; ``problems`` lists each one."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class RuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[Rule] = Field(default_factory=list)
    quality: QualityConfig | None = None


def _describe(name: str, data: Any, exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        where = name
        idx = -1
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            idx = loc[1]
            rule_id = f"#{idx + 1}"
            with contextlib.suppress(KeyError, IndexError, TypeError, AttributeError):
                rule_id = str(data["rules"][idx].get("id", rule_id))
            where += f": rule {rule_id}"
            loc = loc[2:]
        # Tagged unions add the tag to the path ("condition.window.window"): drop it.
        if len(loc) >= 2 and loc[0] == "condition" and isinstance(loc[1], str):
            with contextlib.suppress(KeyError, IndexError, TypeError, AttributeError):
                if loc[1] == data["rules"][idx]["condition"]["kind"]:
                    loc = [loc[0], *loc[2:]]
        fld = ".".join(str(p) for p in loc) or "(rule)"
        problems.append(f"{where}: {fld}: {err['msg']}")
    return problems


def parse_file(name: str, text: str) -> RuleFile:
    try:
        data = yamlio.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise RuleError([f"{name}: not valid YAML: {exc}"]) from exc
    if not isinstance(data, dict):
        raise RuleError([f"{name}: expected a mapping with a 'rules' list"])
    try:
        return RuleFile.model_validate(data)
    except ValidationError as exc:
        raise RuleError(_describe(name, data, exc)) from exc


def load_file(path: Path) -> list[Rule]:
    """Rules of one file (kept for callers that want a single file's rules)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleError([f"{path}: cannot read: {exc.strerror}"]) from exc
    return parse_file(str(path), text).rules


def rule_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(
            p
            for p in path.rglob("*")
            if p.suffix in RULE_SUFFIXES and not p.name.endswith(TEST_SUFFIXES)
        )
    return [path]


def read_sources(*paths: Path) -> dict[str, str]:
    """Rule files under ``paths`` plus every CSV beside them (baselines), as text."""
    sources, problems = _read(*paths)
    if problems:
        raise RuleError(problems)
    return sources


def _read(*paths: Path) -> tuple[dict[str, str], list[str]]:
    sources: dict[str, str] = {}
    problems: list[str] = []
    for root in paths:
        if not root.exists():
            problems.append(f"{root}: no such file or directory")
            continue
        files = rule_files(root)
        base = root if root.is_dir() else root.parent
        files += sorted(base.rglob("*.csv"))
        for f in files:
            try:
                sources[f.as_posix()] = f.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(f"{f}: cannot read: {exc}")
    return sources, problems


def _matches(rule: Rule, reading: Reading) -> bool:
    sel = rule.selector
    if rule.domain is not reading.domain:
        return False
    if sel.metric is not None and sel.metric != reading.metric:
        return False
    if sel.station is not None and sel.station != reading.station_id:
        return False
    if sel.stations is not None and reading.station_id not in sel.stations:
        return False
    if sel.area is not None and sel.area != reading.area:
        return False
    return not (sel.source is not None and sel.source != reading.source)


MAX_SERIES_CACHED = 200_000  # (domain, metric, station, area, source) selections kept


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    baselines: dict[str, Baseline] = field(default_factory=dict)
    quality: QualityConfig = field(default_factory=QualityConfig)
    version: str = "files"
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    # Indexes, built once: the engine asks these for every reading.
    _by_id: dict[str, Rule] = field(init=False, repr=False, compare=False)
    _by_kind: dict[str, tuple[Rule, ...]] = field(init=False, repr=False, compare=False)
    # Each with the one station its selector names, if any: most rules watch one
    # station, and a string comparison rules them out before ``_matches`` is called.
    _by_metric: dict[str | None, tuple[tuple[str | None, Rule], ...]] = field(
        init=False, repr=False, compare=False
    )
    # What ``matching`` chose for each (domain, metric, station, area, source) seen: a
    # station sends the same few series again and again, so selection is a lookup.
    _chosen: dict[tuple[Any, ...], list[Rule]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_kind: dict[str, list[Rule]] = {}
        by_metric: dict[str | None, list[tuple[str | None, Rule]]] = {}
        for r in self.rules:
            by_kind.setdefault(r.condition.kind, []).append(r)
            if r.condition.kind not in ("report", "compound"):
                by_metric.setdefault(r.selector.metric, []).append((r.selector.station, r))
        object.__setattr__(self, "_by_id", {r.id: r for r in self.rules})
        object.__setattr__(self, "_by_kind", {k: tuple(v) for k, v in by_kind.items()})
        object.__setattr__(self, "_by_metric", {k: tuple(v) for k, v in by_metric.items()})
        object.__setattr__(self, "_chosen", {})

    def get(self, rule_id: str) -> Rule | None:
        return self._by_id.get(rule_id)

    def matching(self, reading: Reading) -> list[Rule]:
        """The rules that watch ``reading``, in the order they were written (a new list:
        the caller may keep or change it)."""
        series = (reading.domain, reading.metric, reading.station_id, reading.area,
                  reading.source)  # fmt: skip
        chosen = self._chosen.get(series)
        if chosen is None:
            if len(self._chosen) >= MAX_SERIES_CACHED:
                self._chosen.clear()  # bounded: a flood of new series only costs speed
            chosen = self._chosen[series] = self.select(reading)
        return list(chosen)

    def select(self, reading: Reading) -> list[Rule]:
        """``matching`` without its cache, for a caller that keeps its own (the engine's
        series plans): one cache fewer to fill at each new series."""
        candidates = self._by_metric.get(reading.metric, ()) + self._by_metric.get(None, ())
        station_id = reading.station_id
        found = [r for s, r in candidates
                 if (s is None or s == station_id) and _matches(r, reading)]  # fmt: skip
        if self._by_metric.get(None) and len(found) > 1:
            found.sort(key=self.rules.index)  # keep the order the rules were written in
        return found

    def kind(self, kind: str) -> tuple[Rule, ...]:
        """The rules of one kind, without a copy (asked for every reading)."""
        return self._by_kind.get(kind, ())

    def of_kind(self, *kinds: str) -> list[Rule]:
        if len(kinds) == 1:
            return list(self._by_kind.get(kinds[0], ()))
        return [r for r in self.rules if r.condition.kind in kinds]


def compile_rules(sources: dict[str, str]) -> RuleSet:
    """Validate and compile a rule set; every problem is reported at once."""
    problems: list[str] = []
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    baselines: dict[str, Baseline] = {}
    quality: QualityConfig | None = None
    quality_from = ""
    for name in sorted(sources):
        if not name.endswith(RULE_SUFFIXES) or name.endswith(TEST_SUFFIXES):
            continue
        try:
            parsed = parse_file(name, sources[name])
        except RuleError as exc:
            problems.extend(exc.problems)
            continue
        if parsed.quality is not None:
            if quality is not None:
                problems.append(f"{name}: quality: already defined in {quality_from}")
            quality, quality_from = parsed.quality, name
        for rule in parsed.rules:
            if rule.id in seen:
                problems.append(f"{name}: rule {rule.id}: id: already defined in {seen[rule.id]}")
                continue
            cond = rule.condition
            if isinstance(cond, EndemicCondition):
                key = posixpath.normpath(posixpath.join(posixpath.dirname(name), cond.baseline))
                if key not in sources:
                    problems.append(
                        f"{name}: rule {rule.id}: condition.baseline: no such file {key}"
                    )
                    continue
                if key not in baselines:
                    try:
                        baselines[key] = Baseline.parse(sources[key], key)
                    except ValueError as exc:
                        problems.append(f"{name}: rule {rule.id}: condition.baseline: {exc}")
                        continue
                rule = rule.model_copy(
                    update={"condition": cond.model_copy(update={"baseline": key})}
                )
            seen[rule.id] = name
            rules.append(rule)
    ids = set(seen)
    for rule in rules:
        if isinstance(rule.condition, CompoundCondition):
            for comp in rule.condition.all_of:
                if comp.rule is not None and comp.rule not in ids:
                    problems.append(
                        f"{seen[rule.id]}: rule {rule.id}: condition.all_of: "
                        f"unknown rule {comp.rule!r}"
                    )
    if problems:
        raise RuleError(problems)
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    return RuleSet(
        rules=tuple(rules),
        baselines=baselines,
        quality=quality or QualityConfig(),
        version=digest.hexdigest()[:12],
        sources=dict(sources),
    )


def load_rules(*paths: Path) -> RuleSet:
    """Load every rule under ``paths``; all problems are reported at once."""
    sources, problems = _read(*paths)
    try:
        ruleset = compile_rules(sources)
    except RuleError as exc:
        raise RuleError(problems + exc.problems) from None
    if problems:
        raise RuleError(problems)
    return ruleset
