"""``canhbao record`` (the recorder), ``canhbao db upgrade|current`` (the record's
schema) and ``canhbao history …`` (questions people ask of the record)."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from canhbao.running import on_signal
from canhbao.settings import Settings, get_settings
from topics.connection import Kafka
from topics.durations import parse_duration, span_text

if TYPE_CHECKING:
    from recorder.readings import ReadingSelection

T = TypeVar("T")


#: The display time zone's default (CANHBAO_DISPLAY_TIMEZONE): the province's clock.
LOCAL: tzinfo = ZoneInfo("Asia/Ho_Chi_Minh")


def parse_when(text: str) -> datetime:
    """A point in time: ISO 8601 (a date, or a time; without an offset it is naive
    here and read in the display time zone by :func:`_aware`), or a duration back from
    now (``7d``, ``24h``)."""
    try:
        return datetime.now(UTC) - parse_duration(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: use e.g. 2025-10-14, 2025-10-14T08:30, "
            "2025-10-14T01:30Z or 7d (seven days ago)"
        ) from None
    return when


def _aware(when: datetime | None, tz: tzinfo) -> datetime | None:
    """A command-line time without an offset is in the display time zone."""
    return when.replace(tzinfo=tz) if when is not None and when.tzinfo is None else when


def _when(t: datetime | str | None, tz: tzinfo) -> str:
    """A time as people read it: in the display time zone, to the second, with the
    zone's abbreviation (``2025-10-14 10:00:00 +07``)."""
    if t is None:
        return "—"
    when = datetime.fromisoformat(t) if isinstance(t, str) else t
    return when.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def _seconds(text: str) -> float:
    try:
        return parse_duration(text).total_seconds()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _with_engine(settings: Settings, work: Callable[[Any], Awaitable[T]], check: bool = True) -> T:
    """``work(engine)`` on the record's database; a database whose schema is not this
    code's ends the command with what to run (exit status 2)."""
    from recorder import migrate
    from recorder.store import connect

    async def go() -> T:
        engine = connect(settings.record_url())
        try:
            if check:
                await migrate.check(engine)
            return await work(engine)
        finally:
            await engine.dispose()

    from sqlalchemy.exc import DBAPIError

    try:
        return asyncio.run(go())
    except migrate.SchemaError as exc:
        print(f"canhbao: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except (DBAPIError, OSError) as exc:
        where = migrate.safe_url(settings.record_url())
        reason = getattr(exc, "orig", None) or exc
        print(f"canhbao: the record database {where} cannot be reached: {reason}",
              file=sys.stderr)  # fmt: skip
        raise SystemExit(2) from None


# --- canhbao record -------------------------------------------------------------------


def cmd_record(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import DBAPIError

    from canhbao.broker import kafka_cluster
    from pipeline.worker.faust_fixes import install_catch_up_fetch
    from recorder.migrate import SchemaError, safe_url
    from recorder.service import Recorder, RecorderConfig
    from recorder.store import Store

    install_catch_up_fetch()  # a recorder restarted far behind on Tansu still catches up

    settings = get_settings()
    url = settings.record_url()
    with kafka_cluster(settings) as bootstrap:
        store = Store.open(url)
        recorder = Recorder(
            store,
            RecorderConfig(
                bootstrap=bootstrap,
                group_id=args.group or settings.record_group_id,
                rebalance_timeout_ms=int(settings.rebalance_timeout * 1000),
                fetch_max_wait_ms=settings.fetch_max_wait_ms,
                readings_days=settings.record_readings_days,
            ),
        )

        async def main() -> int:
            from canhbao import metrics

            metrics.serve(
                settings.metrics_port, bootstrap, [args.group or settings.record_group_id]
            )
            on_signal(recorder.stop)
            print(f"recording into {safe_url(url)}", file=sys.stderr, flush=True)
            recorder.selection = await reading_selection(settings, bootstrap)
            runner = await _serve_api(args, settings, store) if args.api else None
            try:
                await recorder.run()
            except SchemaError as exc:
                print(f"canhbao record: {exc}", file=sys.stderr)
                return 2
            except (DBAPIError, OSError) as exc:
                reason = getattr(exc, "orig", None) or exc
                print(f"canhbao record: the record database {safe_url(url)} cannot be "
                      f"reached: {reason}", file=sys.stderr)  # fmt: skip
                return 2
            finally:
                if runner is not None:
                    await runner.cleanup()
                await store.close()
            return 0

        return asyncio.run(main())


async def reading_selection(settings: Settings, bootstrap: Kafka) -> ReadingSelection:
    """Which readings the record keeps, from the start: the rule set last applied to
    the cluster, else the rule files (as the worker starts); the recorder then follows
    the sets applied on canhbao.control.rules."""
    from aiokafka.errors import KafkaError

    from canhbao.control import latest
    from pipeline.rules.loader import RuleError, load_rules
    from recorder.readings import ReadingSelection
    from topics.catalogue import CONTROL_RULES
    from topics.kafka import partitions

    selection = ReadingSelection()
    try:
        # Described first, not read: naming a topic that does not exist yet (a recorder
        # started beside a worker that is creating them) could make the broker create
        # it with its defaults.
        doc = await latest(bootstrap) if await partitions(bootstrap, CONTROL_RULES) else None
    except (KafkaError, ValueError) as exc:
        print(f"canhbao record: the rule set in force could not be read ({exc}); readings "
              "are selected by the rule files until one is read", file=sys.stderr)  # fmt: skip
        doc = None
    if doc is not None and selection.adopt(doc):
        where = f"rule set {doc.version} applied by {doc.applied_by}"
    else:
        try:
            selection.rules = load_rules(settings.rules_path)
        except RuleError as exc:
            print(f"canhbao record: the rule files do not load ({exc}): no reading is "
                  "recorded until a rule set is applied", file=sys.stderr)  # fmt: skip
            return selection
        where = f"the rule files in {settings.rules_path}"
    print(f"recording the readings selected by {where}", file=sys.stderr, flush=True)
    return selection


async def _serve_api(args: argparse.Namespace, settings: Settings, store: Any) -> Any:
    """The record's read-only API beside the recorder (until the console serves it)."""
    from aiohttp import web

    from recorder.api import RecordAPI
    from recorder.tokens import Tokens, read_tokens

    path = settings.record_api_tokens_path
    if not read_tokens(path).departments:
        print(f"canhbao record: no department has an API token yet ({path}); add one with "
              "canhbao record-tokens add DEPARTMENT", file=sys.stderr)  # fmt: skip
    api = RecordAPI(store.engine, Tokens(path), _lead_receivers(settings), settings.display_tz())
    runner = web.AppRunner(api.app(), access_log=None)
    await runner.setup()
    port = args.api_port or settings.record_api_port
    await web.TCPSite(runner, args.api_host, port).start()
    print(f"record API on http://{args.api_host}:{port}/api/v1/ "
          f"(document: /api/v1/openapi.json)", file=sys.stderr, flush=True)  # fmt: skip
    return runner


def cmd_tokens(args: argparse.Namespace) -> int:
    from recorder.tokens import TokenFileError, add_department, read_tokens, remove_department
    from topics.models import Domain

    path = get_settings().record_api_tokens_path
    try:
        if args.action == "list":
            for d in read_tokens(path).departments:
                reads = ", ".join(x.value for x in d.domains) if d.domains else "all domains"
                where = ", ".join(d.areas) if d.areas else "all areas"
                print(f"{d.id:24} {reads} · {where}")
            return 0
        if args.action == "remove":
            if not remove_department(path, args.department):
                print(f"canhbao record-tokens: no token for {args.department}", file=sys.stderr)
                return 1
            print(f"{args.department}: token removed")
            return 0
        try:
            domains = [Domain(d) for d in args.domain]
        except ValueError as exc:
            print(f"canhbao record-tokens: {exc}", file=sys.stderr)
            return 2
        token = add_department(path, args.department, domains, args.area, rotate=args.rotate)
    except TokenFileError as exc:
        print(f"canhbao record-tokens: {exc}", file=sys.stderr)
        return 1
    print(f"{args.department}: {token}")
    print("This token is shown once: give it to the department now. Only its hash is kept "
          f"({path}).", file=sys.stderr)  # fmt: skip
    return 0


# --- canhbao db -----------------------------------------------------------------------


def cmd_db(args: argparse.Namespace) -> int:
    from recorder import migrate

    settings = get_settings()
    where = migrate.safe_url(settings.record_url())
    if args.action == "purge":
        days = args.days or settings.record_readings_days
        cutoff = datetime.now(UTC) - timedelta(days=days)

        async def purge(engine: Any) -> dict[str, int]:
            from recorder.store import Store

            return await Store(engine).purge(cutoff)

        purged = _with_engine(settings, purge)
        print(f"{where}: removed {sum(purged.values())} reading(s) observed before "
              f"{_when(cutoff, settings.display_tz())} ({days} days): "
              + ", ".join(f"{n} from {t}" for t, n in purged.items()))  # fmt: skip
        return 0
    if args.action == "upgrade":
        before, after = _with_engine(
            settings, lambda e: migrate.upgrade(e, args.revision), check=False
        )
        if before == after:
            print(f"{where}: schema {after}, already up to date")
        else:
            print(f"{where}: schema {before or '(empty)'} → {after}")
        return 0
    have = _with_engine(settings, migrate.current, check=False)
    head = migrate.head()
    state = "up to date" if have == head else f"this canhbao writes {head}: run canhbao db upgrade"
    print(f"{where}: schema {have or '(empty)'}, {state}")
    return 0 if have == head else 1


# --- canhbao history ------------------------------------------------------------------


def _emit(rows: list[dict[str, Any]], args: argparse.Namespace, text: Callable[[Any], str]) -> int:
    if args.json:
        json.dump(rows, sys.stdout, ensure_ascii=False, indent=2)
        print()
    elif args.csv:
        if rows:
            out = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
            out.writeheader()
            for row in rows:
                out.writerow({k: _csv_cell(v) for k, v in row.items()})
    else:
        for row in rows:
            print(text(row))
        print(f"({len(rows)} found)", file=sys.stderr)
    return 0


def _csv_cell(value: Any) -> Any:
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return value


def _warning_line(w: dict[str, Any], tz: tzinfo) -> str:
    return (
        f"{_when(w['updated_at'], tz)}  {w['warning_id']} v{w['version']}  {w['transition']:<11} "
        f"{w['domain']}/{w['hazard']} level {w['level_name'] or w['level']} [{w['severity']}] "
        f"{w['status']} · {w['scope_tier']} phase {w['phase']} lead {w['lead_agency']} · "
        f"{', '.join(w['communes'])}"
    )


def _action_line(a: dict[str, Any], tz: tzinfo) -> str:
    about = a["warning_id"] or a["subject"] or ""
    why = f" — {a['reason']}" if a["reason"] else ""
    return f"{_when(a['at'], tz)}  {a['actor']:<16} {a['kind']}/{a['action']:<10} {about}{why}"


def _delivery_line(d: dict[str, Any], tz: tzinfo) -> str:
    delay = "?" if d["delay_seconds"] is None else f"{d['delay_seconds']:.1f} s"
    err = f" ({d['error']})" if d["error"] else ""
    return (
        f"{_when(d['at'], tz)}  {d['outcome']:<10} {d['channel']:<11} {d['receiver_id']:<20} "
        f"attempt {d['attempt']} after {delay}  {d['notification_id']}{err}"
    )


def cmd_history(args: argparse.Namespace) -> int:
    from recorder import queries

    settings = get_settings()
    tz = settings.display_tz()
    what = args.what
    if what != "warning":
        args.since, args.until = _aware(args.since, tz), _aware(args.until, tz)
    if what == "warnings":
        f = queries.WarningFilter(
            since=args.since, until=args.until, domain=args.domain, hazard=args.hazard,
            level=args.level, commune=args.commune, status=args.status, latest=args.latest,
        )  # fmt: skip
        rows = _with_engine(settings, lambda e: queries.warnings(e, f))
        return _emit(rows, args, lambda w: _warning_line(w, tz))
    if what == "actions":
        rows = _with_engine(
            settings,
            lambda e: queries.actions(
                e,
                since=args.since,
                until=args.until,
                actor=args.actor,
                kind=args.kind,
                warning_id=args.warning,
            ),
        )
        return _emit(rows, args, lambda a: _action_line(a, tz))
    if what == "deliveries":
        rows = _with_engine(
            settings,
            lambda e: queries.deliveries(
                e,
                since=args.since,
                until=args.until,
                failed=args.failed,
                slower_than=args.slower_than,
                channel=args.channel,
                receiver=args.receiver,
                warning_id=args.warning,
            ),
        )
        return _emit(rows, args, lambda d: _delivery_line(d, tz))
    # one warning's timeline
    found = _with_engine(settings, lambda e: queries.timeline(e, args.warning_id))
    if found is None:
        print(f"canhbao history: nothing recorded about {args.warning_id}", file=sys.stderr)
        return 1
    if args.json:
        json.dump(found, sys.stdout, ensure_ascii=False, indent=2)
        print()
        return 0
    events: list[tuple[str, str]] = []
    for w in found["states"]:
        events.append((w["updated_at"], f"STATE     v{w['version']} {w['transition']} level "
                       f"{w['level_name']} {w['status']} phase {w['phase']} lead "
                       f"{w['lead_agency']}"))  # fmt: skip
    for a in found["actions"]:
        why = f" — {a['reason']}" if a["reason"] else ""
        events.append((a["at"], f"ACTION    {a['actor']}: {a['kind']}/{a['action']}{why}"))
    for d in found["deliveries"]:
        events.append((d["at"], f"DELIVERY  {_delivery_line(d, tz).split('  ', 1)[1]}"))
    for r in found["readings"]:
        unit = f" {r['unit']}" if r["unit"] else ""
        where = f" ({r['area']})" if r["area"] else ""
        events.append((r["observed_at"], f"READING   {r['station_id']}{where} {r['metric']} "
                       f"{r['value']:g}{unit}"))  # fmt: skip
    for b in found["broadcasts"]:
        events.append((b["requested_at"], f"BROADCAST {b['broadcast_id']} {b['status']}, "
                       f"approved by {', '.join(b['approvals']) or 'nobody'}"))  # fmt: skip
    if args.csv:
        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow(["at", "event"])
        out.writerows(sorted(events))
        return 0
    print(f"{args.warning_id}:")
    for at, line in sorted(events):  # ISO 8601 in UTC: text order is time order
        print(f"  {_when(at, tz)}  {line}")
    return 0


# --- canhbao indicators ---------------------------------------------------------------


LEVEL_NAMES = {"0": "cleared", "1": "I", "2": "II", "3": "III", "4": "IV", "5": "V"}
DELAYS = (
    ("first_reading_to_warning", "first reading over threshold → warning"),
    ("warning_to_verified", "warning → verified"),
    ("warning_to_lead_agency", "warning → delivered to the lead agency"),
    ("warning_to_citizens", "warning → delivered to citizens"),
)


def indicators_text(found: dict[str, Any]) -> str:
    """The indicators as an operator reads them: the total, then each domain and
    commune."""
    p = found["period"]
    lines = [f"Indicators {p['label']} ({p['start'][:10]} to {p['end'][:10]}, end excluded)"]

    def block(title: str, m: dict[str, Any]) -> None:
        levels = (
            ", ".join(f"{LEVEL_NAMES.get(k, k)} {v}" for k, v in m["by_level"].items()) or "none"
        )
        lines.append(f"{title}: {m['warnings']} warning(s) · highest level: {levels}")
        for key, label in DELAYS:
            d = m[key]
            if d["n"]:
                lines.append(f"    {label}: median {span_text(d['median_s'])}, "
                             f"p90 {span_text(d['p90_s'])} (n={d['n']})")  # fmt: skip
            else:
                lines.append(f"    {label}: —")
        success = (
            ", ".join(
                f"{ch} {o['delivered']}/{o['delivered'] + o['failed']} ({o['rate']:.0%})"
                for ch, o in m["delivery_success"].items()
            )
            or "—"
        )
        lines.append(f"    delivery success: {success}")
        lines.append(f"    false alarms: {m['false_alarms']} · flaps: {m['flaps']}")

    block("all", found["total"])
    for g in found["groups"]:
        block(f"{g['domain']} · {g['commune']}", g)
    return "\n".join(lines)


def _lead_receivers(settings: Settings) -> dict[str, set[str]]:
    """Each agency's receivers, from the directory (the lead agency's deliveries)."""
    from alerting.directory import Directory

    try:
        directory = Directory.load(settings.geography_path, settings.directory_path)
    except (OSError, ValueError) as exc:
        print(f"canhbao indicators: the directory could not be read ({exc}); lead "
              "agencies' receivers are recognised by their names", file=sys.stderr)  # fmt: skip
        return {}
    return {code: {r.id for r in a.receivers} for code, a in directory.agencies.items()}


def cmd_indicators(args: argparse.Namespace) -> int:
    from recorder.indicators import indicators, parse_period

    settings = get_settings()
    try:
        period = parse_period(args.period, settings.display_tz())
    except ValueError as exc:
        print(f"canhbao indicators: {exc}", file=sys.stderr)
        return 2
    leads = _lead_receivers(settings)
    found = _with_engine(
        settings,
        lambda e: indicators(e, period, area=args.area, domain=args.domain, lead_receivers=leads),
    )
    if args.json:
        json.dump(found, sys.stdout, ensure_ascii=False, indent=2)
        print()
    else:
        print(indicators_text(found))
    return 0


# --- canhbao report -------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from recorder.report import gather, render

    settings = get_settings()
    leads = _lead_receivers(settings)
    event = _with_engine(settings, lambda e: gather(e, args.warning_id, leads))
    if event is None:
        print(f"canhbao report: nothing recorded about {args.warning_id} "
              "(canhbao history warnings lists what is)", file=sys.stderr)  # fmt: skip
        return 1
    out = Path(args.html)
    out.write_text(render(event, settings.display_tz()), encoding="utf-8")
    print(f"{out}: after-action report of {args.warning_id} ({len(event.states)} states, "
          f"{len(event.timeline['deliveries'])} delivery attempts)")  # fmt: skip
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "record",
        help="record warnings, notifications, deliveries and operator actions in the database",
    )
    p.add_argument("--group", default=None, help="consumer group (default CANHBAO_RECORD_GROUP_ID)")
    p.add_argument("--api", action="store_true", help="also serve the read-only JSON API")
    p.add_argument("--api-host", default="127.0.0.1", help="address of the API")
    p.add_argument("--api-port", type=int, default=None, help="default CANHBAO_RECORD_API_PORT")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("record-tokens", help="departments' tokens of the record's API")
    tsub = p.add_subparsers(dest="action", required=True)
    t = tsub.add_parser("add", help="make a department's token (shown once)")
    t.add_argument("department")
    t.add_argument("--domain", action="append", default=[], help="limit to a domain (repeat)")
    t.add_argument("--area", action="append", default=[], help="limit to a commune (repeat)")
    t.add_argument("--rotate", action="store_true", help="replace the department's token")
    t = tsub.add_parser("remove", help="withdraw a department's token")
    t.add_argument("department")
    tsub.add_parser("list", help="the departments and their scopes")
    p.set_defaults(func=cmd_tokens)

    p = sub.add_parser(
        "db", help="the threat record's database: its schema (upgrade, current), purge"
    )
    p.add_argument("action", choices=["upgrade", "current", "purge"])
    p.add_argument("--revision", default="head", help="upgrade to this migration (default: head)")
    p.add_argument(
        "--days",
        type=int,
        default=None,
        help="purge: keep readings this many days (default CANHBAO_RECORD_READINGS_DAYS)",
    )
    p.set_defaults(func=cmd_db)

    h = sub.add_parser("history", help="ask the threat record (warnings, actions, deliveries)")
    hsub = h.add_subparsers(dest="what", required=True)

    def common(q: argparse.ArgumentParser, window: bool = True) -> None:
        fmt = q.add_mutually_exclusive_group()
        fmt.add_argument("--json", action="store_true", help="JSON on stdout")
        fmt.add_argument("--csv", action="store_true", help="CSV on stdout")
        if window:
            q.add_argument("--since", type=parse_when, help="from (ISO time, Vietnam time "
                           "without an offset; or 7d, 24h back from now)")  # fmt: skip
            q.add_argument("--until", type=parse_when, help="before (as --since)")

    q = hsub.add_parser("warnings", help="warning states, oldest first")
    common(q)
    q.add_argument("--domain")
    q.add_argument("--hazard")
    q.add_argument("--level", type=int, help="0 (cleared) to 5")
    q.add_argument("--commune", help="an area code, e.g. bn-vu-ninh")
    q.add_argument("--status", choices=["new", "verified", "responding", "recovering", "closed"])
    q.add_argument("--latest", action="store_true", help="only each warning's newest state")

    q = hsub.add_parser("warning", help="one warning's timeline")
    q.add_argument("warning_id")
    common(q, window=False)

    q = hsub.add_parser("actions", help="the audit log: who did what, when and why")
    common(q)
    q.add_argument("--actor", help="one person's actions")
    q.add_argument("--kind", choices=["command", "approval", "rules", "silence"])
    q.add_argument("--warning", help="about one warning")

    q = hsub.add_parser("deliveries", help="delivery attempts")
    common(q)
    q.add_argument("--failed", action="store_true", help="only attempts that gave up")
    q.add_argument(
        "--slower-than",
        type=_seconds,
        metavar="DURATION",
        help="only deliveries that took longer, from the notification (e.g. 30s)",
    )
    q.add_argument("--channel")
    q.add_argument("--receiver")
    q.add_argument("--warning")
    h.set_defaults(func=cmd_history)

    p = sub.add_parser(
        "indicators", help="the indicators of a period, per domain and commune (README)"
    )
    p.add_argument(
        "--period", required=True, help="2025-Q4, 2025-10, 2025 or 2025-10-01..2025-12-31"
    )
    p.add_argument("--area", help="one commune (area code)")
    p.add_argument("--domain")
    p.add_argument("--json", action="store_true", help="JSON on stdout")
    p.set_defaults(func=cmd_indicators)

    p = sub.add_parser(
        "report", help="a warning's after-action report: one self-contained, printable HTML file"
    )
    p.add_argument("warning_id")
    p.add_argument("--html", required=True, metavar="FILE", help="where to write it")
    p.set_defaults(func=cmd_report)
