"""``canhbao rules check|test|backtest|apply|active`` and ``canhbao warning ...``:
the engineers' and operators' tools, all on the live pipeline's own code."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

from alerting.directory import Directory
from canhbao.settings import get_settings
from pipeline.rules.loader import RuleError, RuleSet, load_rules
from topics.connection import client_kwargs
from topics.errors import field_errors


def _directory() -> Directory:
    s = get_settings()
    return Directory.load(s.geography_path, s.directory_path)


def _load(paths: list[Path]) -> RuleSet | None:
    try:
        return load_rules(*paths)
    except RuleError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s); nothing was changed", file=sys.stderr)
        return None


def cmd_check(args: argparse.Namespace) -> int:
    rules = _load(args.paths)
    if rules is None:
        return 1
    kinds: dict[str, int] = {}
    for r in rules.rules:
        kinds[r.condition.kind] = kinds.get(r.condition.kind, 0) + 1
    detail = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
    print(f"ok: {len(rules.rules)} rules ({detail}); version {rules.version}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from pipeline.ruletest import find_test_files, run_file

    directory = _directory()
    files = find_test_files(args.paths)
    if not files:
        print("no *.test.yaml files found", file=sys.stderr)
        return 1
    cases = failed = broken = 0
    for f in files:
        result = run_file(f, directory)
        cases += result.cases
        failed += result.failed
        if result.failures and not result.cases:
            # A file that cannot be read or compiled runs no case: it fails as a whole.
            broken += 1
            status, what = "FAIL", "could not run"
        else:
            status = "FAIL" if result.failures else "ok"
            what = f"{result.cases} case{'s' if result.cases != 1 else ''}"
            if result.failed:
                what += f", {result.failed} failed"
        print(f"{status:4}  {f}  ({what})")
        for failure in result.failures:
            print(f"      {failure}")
    # Counted in cases, as written in the files; a file that could not run is named too.
    summary = f"{cases} case{'s' if cases != 1 else ''} in {len(files)} files: "
    summary += f"{cases - failed} passed, {failed} failed"
    if broken:
        summary += f", {broken} file(s) could not run"
    print(summary)
    return 1 if failed or broken else 0


class _Progress:
    """A progress bar on stderr for long data (a line per 10% when not a terminal)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        pct = min(100, done * 100 // max(total, 1))
        if self.tty:
            bar = "#" * (pct // 4)
            print(f"\r  reading history [{bar:<25}] {pct:3d}%", end="", file=sys.stderr)
        elif pct // 10 > self.last // 10:
            print(f"  reading history: {pct}%", file=sys.stderr)
        self.last = pct

    def done(self) -> None:
        if self.tty and self.last >= 0:
            print(file=sys.stderr)


def cmd_backtest(args: argparse.Namespace) -> int:
    rules = _load([args.rules])
    other = _load([args.compare]) if args.compare else None
    if rules is None or (args.compare and other is None):
        return 1
    if args.max_raises_per_day <= 0:
        print("--max-raises-per-day must be positive", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="canhbao-backtest-") as tmp:
        return _backtest(args, rules, other, _directory(), Path(tmp))


def _backtest(
    args: argparse.Namespace,
    rules: RuleSet,
    other: RuleSet | None,
    directory: Directory,
    tmp: Path,
) -> int:
    from canhbao.htmlreport import render
    from pipeline.backtest import (
        BacktestResult,
        ChartSample,
        Tally,
        compare,
        sort_history,
        stream_backtest,
        stream_history,
        transitions_json,
    )
    from pipeline.history import OutOfOrder

    limit = args.max_raises_per_day
    chart = ChartSample() if args.html else None

    def run(path: Path, tally: Tally) -> tuple[BacktestResult, BacktestResult | None]:
        # Streamed: the file is read as it is replayed, once per rule set, and both sets
        # read it with the first set's domains for rows without one.
        progress = _Progress()
        readings = stream_history(path, rules, tally, progress)
        result = stream_backtest(readings, rules, directory, limit, chart)
        progress.done()
        if other is None:
            return result, None
        return result, stream_backtest(stream_history(path, rules, Tally()), other, directory,
                                       limit)  # fmt: skip

    tally = Tally()
    try:
        try:
            result, other_result = run(args.data, tally)
        except OutOfOrder as exc:
            # Not in time order: sorted out of core (memory stays bounded), then replayed.
            print(f"{exc}; sorting it by time in temporary files first", file=sys.stderr)
            tally = Tally()
            if chart is not None:
                chart = ChartSample()
            progress = _Progress()
            ordered = sort_history(args.data, rules, tmp, tally, progress)
            progress.done()
            result, other_result = run(ordered, tally)  # its bad lines were counted
    except (OSError, ValueError) as exc:
        print(f"cannot read {args.data}: {exc}", file=sys.stderr)
        return 1
    for err in tally.errors:
        print(f"skipped {err}", file=sys.stderr)
    if tally.skipped:
        print(f"{tally.skipped} line(s) skipped, {tally.read} read", file=sys.stderr)
    flapping = [("a: " if other_result else "", f) for f in result.flapping]
    if other_result is not None:
        flapping += [("b: ", f) for f in other_result.flapping]

    if args.json:
        try:
            for line in transitions_json(result, "a" if other_result else None):
                print(line)
            if other_result is not None:
                for line in transitions_json(other_result, "b"):
                    print(line)
            sys.stdout.flush()
        except BrokenPipeError:
            # Piped into head: the reader has what it wanted.
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (stdout for the rest of the run)
            return 0
    else:
        print(f"rule set {result.version}: {tally.read} readings, {result.start} → {result.end}")
        if result.rejected:
            print(
                "  set aside by the quality gate: "
                + ", ".join(f"{k.value} {v}" for k, v in result.rejected.items())
            )
        for s in result.summaries.values():
            levels = ", ".join(f"{k} {v:.1f} h" for k, v in sorted(s.time_at_level.items()))
            print(f"\n{s.rule}: raised {s.raised}, flaps {s.flaps}; time at level: {levels or '-'}")
            if s.time_at_risk:
                print(f"  time at disaster risk level: {_risk_hours(s.time_at_risk)}")
            for t in s.transitions:
                level = f"level {t['level_name'] or t['level']}"
                print(
                    f"  {t['at']}  {t['subject']:<16} {t['transition']:<12} "
                    + (f"{level:<16}{_risk_column(t)}" if t.get("risk_level") else level)
                )
        for note in _risk_samples(result, directory):
            print(note)
        if other_result is not None:
            print(f"\ncompared with {other_result.version} (a = {args.rules}, b = {args.compare}):")
            for row in compare(result, other_result):
                shift = row["first_raise_shift_minutes"]
                print(
                    f"  {row['rule']}: raised {row['raised'][0]} → {row['raised'][1]}, flaps "
                    f"{row['flaps'][0]} → {row['flaps'][1]}, hours at level "
                    f"{row['hours_at_level'][0]} → {row['hours_at_level'][1]}"
                    + (f", first raise {shift:+.0f} min" if shift is not None else "")
                )
    # Flapping rules: in the report, or on stderr when stdout is JSON lines.
    stream = sys.stderr if args.json else sys.stdout
    if flapping:
        print(f"\nflapping (more than {limit:g} raises a day):", file=stream)
    for tag, f in flapping:
        print(f"  warning: {tag}{f.message(limit)}", file=stream)
    if args.html:
        from canhbao.htmlreport import RuleSetRun

        compared = (
            RuleSetRun("b", str(args.compare), other, other_result)
            if other is not None and other_result is not None
            else None
        )
        assert chart is not None
        page = render(
            chart.readings(),
            rules,
            result,
            name=str(args.rules),
            compare=compared,
            max_raises_per_day=limit,
            read=tally.read,
        )
        args.html.write_text(page, encoding="utf-8")
        print(f"HTML report: {args.html}", file=sys.stderr)
    return 0


def _risk_hours(hours: dict[int, float]) -> str:
    from alerting import palette

    return ", ".join(f"{k} ({palette.of(k).name_en}) {v:.1f} h" for k, v in sorted(hours.items()))


def _risk_column(t: dict[str, object]) -> str:
    """The disaster risk level beside the alarm level: "risk 3 (QĐ ... khoản 3 điểm b)"."""
    return f"risk {t['risk_level']} ({t['risk_basis']})"


def _risk_samples(result: object, directory: Directory) -> list[str]:
    """Which risk levels rest on sample station attributes, to replace with official ones."""
    from pipeline.backtest import BacktestResult

    assert isinstance(result, BacktestResult)
    notes = []
    for subject in sorted({w.subject for w in result.warnings if w.risk_level is not None}):
        attrs = directory.station_risk(subject)
        if attrs is not None and attrs.sample:
            notes.append(
                f"note: the risk levels at {subject} rest on SAMPLE {', '.join(attrs.sample)} "
                "(config/geography.yaml, station_risk): replace them with the official values"
            )
    return notes


def cmd_apply(args: argparse.Namespace) -> int:
    from canhbao import control

    settings = get_settings()
    if not settings.kafka_bootstrap:
        print(
            "rules apply needs CANHBAO_KAFKA_BOOTSTRAP: the cluster the workers run on",
            file=sys.stderr,
        )
        return 2
    rules = _load(args.paths)
    if rules is None:
        return 1
    doc = asyncio.run(control.publish(settings.kafka_connection(), rules, args.actor, args.comment))
    print(
        f"applied rule set {doc.version} ({len(rules.rules)} rules) as {args.actor}; "
        "workers switch to it without restarting"
    )
    return 0


def cmd_active(args: argparse.Namespace) -> int:
    from canhbao import control

    settings = get_settings()
    if not settings.kafka_bootstrap:
        print("needs CANHBAO_KAFKA_BOOTSTRAP", file=sys.stderr)
        return 2
    doc = asyncio.run(control.latest(settings.kafka_connection()))
    if doc is None:
        print("no rule set applied yet: workers use their rule files")
        return 0
    print(
        json.dumps(
            {
                "version": doc.version,
                "applied_by": doc.applied_by,
                "applied_at": doc.applied_at.isoformat(),
                "files": sorted(doc.sources),
            },
            ensure_ascii=False,
        )
    )
    return 0


def cmd_warning(args: argparse.Namespace) -> int:
    from aiokafka import AIOKafkaProducer
    from pydantic import ValidationError

    from topics.catalogue import COMMANDS
    from topics.models import Command

    settings = get_settings()
    if args.action == "raise_risk" and args.by is None:
        print(
            "raise_risk needs --by 1 (two hazards together or in succession), --by 2 (serious "
            "risk to people and property) or --by 0 (withdraw a raise)",
            file=sys.stderr,
        )
        return 1
    if args.by is not None and args.action != "raise_risk":
        print(f"--by is for raise_risk, not {args.action}", file=sys.stderr)
        return 1
    try:
        command = Command(
            command_id=str(uuid.uuid4()),
            warning_id=args.warning_id,
            action=args.action,
            actor=args.actor,
            reason=args.reason,
            phase=args.phase,
            risk_by=args.by,
        )
    except ValidationError as exc:
        print("\n".join(field_errors(exc, "command")), file=sys.stderr)
        return 1
    # Checked first, so a command that would be refused says so without a cluster.
    if not settings.kafka_bootstrap:
        print("needs CANHBAO_KAFKA_BOOTSTRAP", file=sys.stderr)
        return 2

    async def send() -> None:
        producer = AIOKafkaProducer(**client_kwargs(settings.kafka_connection()), acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(COMMANDS, command.to_bytes(), key=command.subject.encode())
        finally:
            await producer.stop()

    asyncio.run(send())
    print(f"sent {command.action.value} for {command.warning_id} ({command.command_id})")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    rules = sub.add_parser("rules", help="check, test, backtest and apply threshold rules")
    rsub = rules.add_subparsers(dest="rules_command", required=True)

    p = rsub.add_parser("check", help="validate rule files; exit 1 with every problem")
    p.add_argument("paths", nargs="+", type=Path)
    p.set_defaults(func=cmd_check)

    p = rsub.add_parser("test", help="run rule unit tests (*.test.yaml)")
    p.add_argument("paths", nargs="+", type=Path)
    p.set_defaults(func=cmd_test)

    p = rsub.add_parser("backtest", help="replay history through a rule set")
    p.add_argument("--rules", required=True, type=Path)
    p.add_argument("--data", required=True, type=Path, help="CSV or JSONL of readings")
    p.add_argument("--compare", type=Path, help="a second rule set to compare with")
    p.add_argument("--json", action="store_true", help="transitions as JSON lines")
    p.add_argument(
        "--max-raises-per-day",
        type=float,
        default=3.0,
        metavar="N",
        help="warn about a rule that raises one warning more often than this a day "
        "(default: %(default)g)",
    )
    p.add_argument(
        "--html",
        type=Path,
        nargs="?",
        const=Path("backtest-report.html"),
        default=Path("backtest-report.html"),
        metavar="FILE",
        help="write the HTML report to FILE (default, also for a bare --html: %(default)s)",
    )
    p.add_argument("--no-html", dest="html", action="store_const", const=None)
    p.set_defaults(func=cmd_backtest)

    p = rsub.add_parser("apply", help="publish a checked rule set to the running workers")
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--actor", default=getpass.getuser(), help="who applies it (recorded)")
    p.add_argument("--comment", default="")
    p.set_defaults(func=cmd_apply)

    p = rsub.add_parser("active", help="show the rule set the workers follow")
    p.set_defaults(func=cmd_active)

    w = sub.add_parser(
        "warning", help="operator events: verify, respond, recover, close, phase, risk level"
    )
    w.add_argument(
        "action", choices=["verify", "respond", "recover", "close", "set_phase", "raise_risk"]
    )
    w.add_argument("warning_id")
    w.add_argument("--actor", required=True, help="who decides (recorded on the warning)")
    w.add_argument("--reason", default="")
    w.add_argument("--phase", type=int, choices=[1, 2, 3])
    w.add_argument(
        "--by",
        type=int,
        choices=[0, 1, 2],
        help="raise_risk: raise the disaster risk level by 1 (two hazards together or in "
        "succession) or 2 (serious risk to people and property), at most 5 "
        "(Decision 18/2021/QĐ-TTg, Article 4 clause 4); 0 withdraws a raise",
    )
    w.set_defaults(func=cmd_warning)
