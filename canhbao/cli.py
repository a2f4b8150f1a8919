"""The ``canhbao`` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from typing import TYPE_CHECKING

from canhbao.running import on_signal, stop_event
from canhbao.settings import Settings, get_settings

if TYPE_CHECKING:
    from alerting.cap_signature import CapSigner


def _embedded_env() -> Settings:
    """The settings on the embedded broker: its timing, unless set explicitly (the
    environment keeps them for the processes this one starts)."""
    from canhbao.broker import embedded_env

    for name, value in embedded_env().items():
        os.environ.setdefault(name, value)
    return get_settings()


def cmd_broker(args: argparse.Namespace) -> int:
    from canhbao.broker import EmbeddedBroker

    broker = EmbeddedBroker(port=args.port)
    broker.start()
    print(f"Tansu broker (memory storage: nothing is kept on disk) on {broker.bootstrap}")
    print(f"  export CANHBAO_KAFKA_BOOTSTRAP={broker.bootstrap}   # then stop with Ctrl-C")
    sys.stdout.flush()
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        broker.stop()
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from topics.catalogue import CATALOGUE

    settings = get_settings()
    if args.action == "list":
        for s in CATALOGUE:
            parts = s.partitions or settings.partitions
            retention = "forever" if s.retention_ms is None else f"{s.retention_ms // 86_400_000}d"
            print(f"{s.name:40} {parts:>3}p  {s.cleanup.value:8} {retention:>8}  key={s.key}")
        return 0

    from canhbao.broker import kafka_cluster
    from topics.admin import create_topics

    with kafka_cluster(settings) as bootstrap:
        report = asyncio.run(
            create_topics(
                bootstrap,
                default_partitions=settings.partitions,
                replication_factor=settings.replication_factor,
                min_insync_replicas=settings.min_insync_replicas,
            )
        )
    for name in report.created:
        print(f"created  {name}")
    for name in report.existing:
        print(f"exists   {name}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from canhbao.broker import kafka_cluster
    from canhbao.worker import run_worker

    settings = get_settings()
    if not settings.kafka_bootstrap:
        settings = _embedded_env()
    with kafka_cluster(settings) as bootstrap:
        if not settings.kafka_bootstrap:
            print(f"embedded Tansu broker on {bootstrap} (memory only)", file=sys.stderr)
        run_worker(settings, bootstrap)
    return 0


def cmd_dispatch(args: argparse.Namespace) -> int:
    from canhbao.broker import kafka_cluster
    from canhbao.channels import dispatcher_for
    from pipeline.worker.faust_fixes import install_catch_up_fetch

    install_catch_up_fetch()  # a dispatcher far behind on Tansu still catches up

    settings = get_settings()
    if not settings.kafka_bootstrap:
        settings = _embedded_env()
    with kafka_cluster(settings) as bootstrap:
        dispatcher = dispatcher_for(args.channel, settings, bootstrap)

        async def main() -> None:
            from canhbao import metrics

            metrics.serve(settings.metrics_port, bootstrap, [dispatcher.group_id])
            on_signal(dispatcher.stop)
            await dispatcher.run()

        asyncio.run(main())
    return 0


def cmd_receiver(args: argparse.Namespace) -> int:
    from canhbao.receiver import Delivery, WebhookReceiver

    settings = get_settings()
    secret = (
        settings.webhook_secret.get_secret_value().encode() if settings.webhook_secret else None
    )

    def show(d: Delivery) -> None:
        print(f"{d.path}: {d.body.get('body', '')}", flush=True)

    async def main() -> None:
        receiver = await WebhookReceiver(
            secret=secret, host=args.host, port=args.port, on_delivery=show
        ).start()
        print(f"webhook receiver on {receiver.base_url}/hooks/<agency>", flush=True)
        await stop_event().wait()
        await receiver.stop()

    asyncio.run(main())
    return 0


def cap_signer(settings: Settings) -> CapSigner | None:
    """The CAP signer the settings configure; None when neither file is set. Raises
    ``ValueError`` (a ``SigningError``) naming what is wrong, never the passphrase."""
    from alerting.cap_signature import CapSigner, SigningError

    key, cert = settings.cap_signing_key, settings.cap_signing_cert
    if key is None and cert is None:
        return None
    if key is None or cert is None:
        raise SigningError(
            "set both CANHBAO_CAP_SIGNING_KEY and CANHBAO_CAP_SIGNING_CERT to sign CAP "
            f"messages (only {'the key' if key else 'the certificate'} is set)"
        )
    secret = settings.cap_signing_key_passphrase
    return CapSigner.load(key, cert, secret.get_secret_value().encode() if secret else None)


def cmd_cap_feed(args: argparse.Namespace) -> int:
    from alerting.directory import Directory
    from canhbao.broker import kafka_cluster
    from consumers.cap_feed import serve

    settings = get_settings()
    directory = Directory.load(settings.geography_path, settings.directory_path)
    try:
        signer = cap_signer(settings)
    except ValueError as exc:
        print(f"canhbao cap-feed: {exc}", file=sys.stderr)
        return 2
    with kafka_cluster(settings) as bootstrap:

        async def main() -> None:
            stop = stop_event()
            await serve(bootstrap, args.host, args.port, directory, base_url=args.base_url,
                        stop_event=stop, signer=signer)  # fmt: skip

        asyncio.run(main())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from canhbao.demo import run_demo
    from feeds.scenarios import get

    try:
        get(args.scenario)
    except KeyError as exc:
        print(f"canhbao demo: {exc.args[0]}", file=sys.stderr)
        return 2
    return run_demo(
        get_settings(),
        duration=args.duration,
        as_json=args.json,
        scenario=args.scenario,
        serve=args.serve,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="canhbao",
        description="Early-warning pipeline: readings → warnings → notifications.",
        epilog="Without CANHBAO_KAFKA_BOOTSTRAP, commands that need Kafka start an "
        "embedded Tansu broker (memory only).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("broker", help="run the embedded Tansu broker in the foreground")
    p.add_argument("--port", type=int, default=9092)
    p.set_defaults(func=cmd_broker)

    p = sub.add_parser("topics", help="the topic catalogue")
    p.add_argument("action", choices=["create", "list"])
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser("worker", help="run the stream processors (Faust worker)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("dispatch", help="run a delivery service for one channel")
    p.add_argument("channel", choices=["webhook", "email", "sms", "loudspeaker", "cap"])
    p.set_defaults(func=cmd_dispatch)

    p = sub.add_parser("receiver", help="run a local webhook receiver (what an agency runs)")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)"
    )
    p.add_argument("--port", type=int, default=8787)
    p.set_defaults(func=cmd_receiver)

    from canhbao.alerts_cli import add_parsers as add_alerts
    from canhbao.bench_cli import add_parsers as add_bench
    from canhbao.console_cli import add_parsers as add_console
    from canhbao.feeds_cli import add_parsers as add_feeds
    from canhbao.operator_cli import add_operator_parsers
    from canhbao.record_cli import add_parsers as add_record
    from canhbao.rules_cli import add_parsers
    from canhbao.simulate_cli import add_parsers as add_simulate

    add_parsers(sub)
    add_operator_parsers(add_alerts(sub))
    add_feeds(sub)
    add_simulate(sub)
    add_bench(sub)
    add_console(sub)
    add_record(sub)

    p = sub.add_parser("cap-feed", help="serve the CAP 1.2 Atom feed of the current alerts")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8790)
    p.add_argument("--base-url", default=None, help="public URL the feed links use")
    p.set_defaults(func=cmd_cap_feed)

    p = sub.add_parser(
        "demo", help="a scenario end to end (default: a multi-hazard day in every domain)"
    )
    p.add_argument(
        "--scenario",
        default="multi",
        help="multi (default), flood, air, dengue, cyber or faulty (see `canhbao simulate --list`)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=45.0,
        help="seconds the demo runs (the scenario is time-compressed into it)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout at the end")
    p.add_argument(
        "--serve",
        action="store_true",
        help="after the scenario, keep the console and every part running until Ctrl-C",
    )
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = os.environ.get("CANHBAO_LOG_LEVEL", "warning").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    from topics.connection import KafkaSettingsError

    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except KafkaSettingsError as exc:  # names the settings at fault, never a secret
        print(f"canhbao: the Kafka connection settings do not fit: {exc}", file=sys.stderr)
        return 2
    finally:
        logging.getLogger(__name__).debug("done in %.1f s", time.monotonic() - started)


__all__ = ["Settings", "build_parser", "main"]
