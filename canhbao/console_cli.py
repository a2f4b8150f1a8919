"""``canhbao console`` (the operator console in a browser) and ``canhbao users`` (its
accounts). Reads the settings and passes plain values down to ``console/``."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import secrets
import sys

from canhbao.settings import Settings, get_settings
from console.accounts import AccountError, Accounts, Role


def _accounts(settings: Settings) -> Accounts:
    secret = settings.console_session_secret
    key = secret.get_secret_value().encode() if secret else secrets.token_bytes(32)
    return Accounts(settings.console_db_path, key, settings.console_session_hours * 3600)


def cmd_console(args: argparse.Namespace) -> int:
    from alerting.directory import Directory
    from canhbao.broker import kafka_cluster
    from canhbao.console_record import RecordHistory
    from canhbao.running import stop_event
    from console.serve import serve
    from console.web import ConsoleConfig
    from pipeline.worker.faust_fixes import install_catch_up_fetch

    install_catch_up_fetch()  # the live stream's readers catch up on Tansu too
    settings = get_settings()
    accounts = _accounts(settings)
    if not settings.console_session_secret:
        print("CANHBAO_CONSOLE_SESSION_SECRET is unset: sessions end when this console "
              "stops, and a second console would not know them", file=sys.stderr)  # fmt: skip
    if not accounts.list():
        print("no account yet: add one with  canhbao users add NAME --role admin",
              file=sys.stderr)  # fmt: skip
    with kafka_cluster(settings) as bootstrap:

        async def main() -> None:
            from canhbao import metrics
            from canhbao.console_record import sources

            # Also here for symmetry with the other services; the console's own port
            # serves /metrics too (console/web.py), with every group's lag.
            metrics.serve(settings.metrics_port)
            from alerting.routes import load_routing
            from console.broadcasts import citizen_receiver
            from recorder.store import connect

            # Read once, for the broadcast form and the pages alike.
            directory = Directory.load(settings.geography_path, settings.directory_path)
            # The routing's citizen receiver: what a broadcast asked for in the console
            # goes out on, and when it expires, as the pipeline's own requests.
            config = ConsoleConfig(behind_https=settings.console_behind_https,
                                   directory=directory,
                                   citizens=citizen_receiver(
                                       load_routing(settings.routes_path)))  # fmt: skip
            # A warning's history comes from the threat record (canhbao record); so do
            # the map, rules, health and indicators pages and the record's API: one
            # engine (one connection pool) for them all.
            engine = connect(settings.record_url())
            history = RecordHistory(engine, settings.rules_path)
            pages = sources(
                directory, engine, settings.record_api_tokens_path, settings.display_tz()
            )
            try:
                await serve(bootstrap, accounts, args.host, args.port, stop_event(), config,
                            history=history, sources=pages)  # fmt: skip
            finally:
                await engine.dispose()

        asyncio.run(main())
    return 0


def _read_password(from_stdin: bool) -> str | None:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        print("the two passwords differ", file=sys.stderr)
        return None
    return first


def cmd_users(args: argparse.Namespace) -> int:
    accounts = _accounts(get_settings())
    try:
        if args.users_command == "add":
            password = _read_password(args.password_stdin)
            if password is None:
                return 1
            a = accounts.add(args.name, args.role, password)
            print(f"added {a.name} ({a.role.value})")
        elif args.users_command == "disable":
            accounts.disable(args.name)
            print(f"disabled {args.name}; its sessions are ended")
        else:
            for a in accounts.list():
                print(f"{a.name:24} {a.role.value:9} {'disabled' if a.disabled else 'active'}")
    except AccountError as exc:
        print(f"canhbao users: {exc}", file=sys.stderr)
        return 1
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("console", help="serve the operator console (live warnings, actions)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8700)
    p.set_defaults(func=cmd_console)

    u = sub.add_parser("users", help="the console's accounts and their roles")
    usub = u.add_subparsers(dest="users_command", required=True)
    p = usub.add_parser("add", help="add an account (asks for its password)")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=[r.value for r in Role])
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of stdin")  # fmt: skip
    p.set_defaults(func=cmd_users)
    p = usub.add_parser("list", help="every account, its role and whether it is disabled")
    p.set_defaults(func=cmd_users)
    p = usub.add_parser("disable", help="disable an account and end its sessions")
    p.add_argument("name")
    p.set_defaults(func=cmd_users)
