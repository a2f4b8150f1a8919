"""Rule unit tests written in YAML, in the spirit of ``promtool test rules``.

```yaml
rule_files: [water.yaml]          # relative to this file; default: every rule file beside it
tests:
  - name: Đáp Cầu rises through I, II and III, then recedes
    start: 2025-10-07T00:00:00+07:00
    interval: 1h
    series:
      - {station: dap-cau, domain: water, metric: water_level_m, values: "3.9 4.35 5.4 6.4 4.1"}
    expect:                        # every transition of these rules, in order
      - {at: 1h, rule: water.flood.dap-cau, transition: raised, level: 1, risk_level: 1}
    absent: [quality.spike]        # rules that must not change state at all
```

``values`` accepts numbers, ``_`` for a missing sample and promtool's
expansions: ``a+bxN`` (a, then N more values each b larger; b may be
negative) and ``_xN`` (N missing samples).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from alerting.directory import Directory
from pipeline.engine import Engine
from pipeline.replay import Replay
from pipeline.rules.loader import RuleError, RuleSet, compile_rules, read_sources
from topics import yamlio
from topics.durations import Duration
from topics.errors import field_errors
from topics.models import Action, Command, Domain, Phase, Reading, Report, Severity, Transition


class Series(BaseModel):
    model_config = ConfigDict(extra="forbid")

    station: str
    domain: Domain
    metric: str
    values: str | list[float | str]
    area: str | None = None
    source: str | None = None
    interval: Duration | None = None
    offset: Duration | None = None


class ReportAt(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: Duration | AwareDatetime
    report_id: str
    domain: Domain
    category: str
    severity: Severity
    areas: list[str]
    reporter: str = "test"
    text: str = ""


class CommandAt(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: Duration | AwareDatetime
    warning_id: str
    action: Action
    actor: str = "test-operator"
    reason: str = ""
    phase: Phase | None = None


class Expected(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: Duration | AwareDatetime | None = None
    rule: str
    subject: str | None = None
    transition: Transition
    level: int | None = None
    scope: str | None = None
    areas: list[str] | None = None
    lead: str | None = None
    status: str | None = None
    risk_level: int | None = Field(default=None, ge=0, le=5, description="0: none stated")


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    start: AwareDatetime
    interval: Duration = Field(default_factory=lambda: timedelta(minutes=1))
    end: Duration | None = Field(default=None, description="run the clock this long")
    series: list[Series] = Field(default_factory=list)
    reports: list[ReportAt] = Field(default_factory=list)
    commands: list[CommandAt] = Field(default_factory=list)
    expect: list[Expected] = Field(default_factory=list)
    absent: list[str] = Field(default_factory=list)


class RuleTestFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule_files: list[str] | None = None
    tests: list[Case] = Field(min_length=1)


def expand_values(values: str | list[float | str]) -> list[float | None]:
    tokens = values.split() if isinstance(values, str) else [str(v) for v in values]
    out: list[float | None] = []
    for tok in tokens:
        if tok == "_":
            out.append(None)
        elif tok.startswith("_x"):
            out += [None] * int(tok[2:])
        elif "x" in tok and ("+" in tok[1:] or "-" in tok[1:]):
            head, times = tok.rsplit("x", 1)
            sign = 1.0
            idx = head.rfind("+", 1)
            if idx < 0:
                idx, sign = head.rfind("-", 1), -1.0
            start, step = float(head[:idx]), sign * float(head[idx + 1 :])
            out += [round(start + step * i, 10) for i in range(int(times) + 1)]
        else:
            out.append(float(tok))
    return out


def _when(start: datetime, at: timedelta | datetime) -> datetime:
    return at if isinstance(at, datetime) else start + at


def run_case(case: Case, rules: RuleSet, directory: Directory) -> list[str]:
    """Failures of one case (empty when it passes)."""
    events: list[tuple[datetime, int, Any]] = []
    for s in case.series:
        step = s.interval or case.interval
        base = case.start + (s.offset or timedelta(0))
        for i, v in enumerate(expand_values(s.values)):
            if v is None:
                continue
            reading = Reading(
                station_id=s.station,
                domain=s.domain,
                metric=s.metric,
                value=v,
                observed_at=base + i * step,
                area=s.area,
                source=s.source,
            )
            events.append((reading.observed_at, 0, reading))
    for r in case.reports:
        at = _when(case.start, r.at)
        fields = r.model_dump(exclude={"at"})
        events.append((at, 1, Report(observed_at=at, **fields)))
    for c in case.commands:
        at = _when(case.start, c.at)
        cmd = Command(command_id=f"test-{len(events)}", at=at, **c.model_dump(exclude={"at"}))
        events.append((at, 2, cmd))
    events.sort(key=lambda e: (e[0], e[1]))

    replay = Replay(Engine(rules, directory))
    for _, kind, ev in events:
        if kind == 0:
            replay.reading(ev)
        elif kind == 1:
            replay.report(ev)
        else:
            replay.command(ev)
    last = events[-1][0] if events else case.start
    replay.finish(case.start + case.end if case.end else last)

    failures: list[str] = []
    failures += [f"command refused: {e}" for e in replay.errors]
    watched = {e.rule for e in case.expect}
    got = [w for w in replay.warnings if w.rule_id in watched]
    for i, exp in enumerate(case.expect):
        if i >= len(got):
            failures.append(f"expected #{i + 1} {_show_exp(exp, case.start)}, got nothing more")
            continue
        w = got[i]
        problems = []
        if w.rule_id != exp.rule:
            problems.append(f"rule {w.rule_id}")
        if exp.subject is not None and w.subject != exp.subject:
            problems.append(f"subject {w.subject}")
        if w.transition is not exp.transition:
            problems.append(f"transition {w.transition.value}")
        if exp.level is not None and w.level != exp.level:
            problems.append(f"level {w.level}")
        if exp.at is not None and w.updated_at != _when(case.start, exp.at):
            problems.append(f"at {_offset(w.updated_at, case.start)}")
        if exp.scope is not None and w.scope_tier.value != exp.scope:
            problems.append(f"scope {w.scope_tier.value}")
        if exp.areas is not None and sorted(a.code for a in w.areas) != sorted(exp.areas):
            problems.append(f"areas {[a.code for a in w.areas]}")
        if exp.lead is not None and w.lead_agency.code != exp.lead:
            problems.append(f"lead {w.lead_agency.code}")
        if exp.status is not None and w.status.value != exp.status:
            problems.append(f"status {w.status.value}")
        if exp.risk_level is not None and (w.risk_level or 0) != exp.risk_level:
            problems.append(f"risk level {w.risk_level or 'none'}")
        if problems:
            failures.append(
                f"expected #{i + 1} {_show_exp(exp, case.start)}, got {', '.join(problems)}"
            )
    for extra in got[len(case.expect) :]:
        failures.append(
            f"unexpected {extra.rule_id} {extra.subject} {extra.transition.value} "
            f"level {extra.level} at {_offset(extra.updated_at, case.start)}"
        )
    for rule_id in case.absent:
        fired = [w for w in replay.warnings if w.rule_id == rule_id]
        if fired:
            first = fired[0]
            failures.append(
                f"{rule_id} must not fire, but {first.transition.value} level {first.level} "
                f"at {_offset(first.updated_at, case.start)}"
            )
    return failures


def _offset(at: datetime, start: datetime) -> str:
    d = at - start
    return f"+{d}" if d >= timedelta(0) else f"-{-d}"


def _show_exp(exp: Expected, start: datetime) -> str:
    at = f" at {_offset(_when(start, exp.at), start)}" if exp.at is not None else ""
    lvl = f" level {exp.level}" if exp.level is not None else ""
    if exp.risk_level is not None:
        lvl += f" risk level {exp.risk_level or 'none'}"
    return f"{exp.rule} {exp.transition.value}{lvl}{at}"


@dataclass
class FileResult:
    """One test file's outcome: its cases, the failed ones, and every failure line."""

    cases: int
    failed: int = 0
    failures: list[str] = field(default_factory=list)


def run_file(path: Path, directory: Directory) -> FileResult:
    """Run one test file; a file that cannot be read or compiled fails as a whole."""
    try:
        data = yamlio.safe_load(path.read_text(encoding="utf-8")) or {}
        spec = RuleTestFile.model_validate(data)
    except (OSError, yaml.YAMLError) as exc:
        return FileResult(0, 0, [f"{path}: {exc}"])
    except ValidationError as exc:
        return FileResult(
            0,
            0,
            field_errors(exc, "(file)", prefix=f"{path}: "),
        )
    try:
        if spec.rule_files:
            sources = read_sources(*[path.parent / f for f in spec.rule_files])
        else:
            sources = read_sources(path.parent)
        rules = compile_rules(sources)
    except RuleError as exc:
        return FileResult(0, 0, [f"{path}: rules: {p}" for p in exc.problems])
    result = FileResult(len(spec.tests))
    for case in spec.tests:
        failures = run_case(case, rules, directory)
        result.failed += bool(failures)
        result.failures += [f"{path}: {case.name}: {f}" for f in failures]
    return result


def find_test_files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(p.rglob("*.test.yaml"))
        else:
            out.append(p)
    return out
