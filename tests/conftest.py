"""Shared fixtures. ``--broker tansu,kafka`` picks which real brokers the
integration suite runs on (default: the embedded Tansu)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from canhbao.broker import EmbeddedBroker
from canhbao.kafka_local import KafkaStartError, apache_kafka
from tests import servers

REPO = Path(__file__).resolve().parent.parent
BROKER_KINDS = ("tansu", "kafka")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--broker",
        default=os.environ.get("CANHBAO_TEST_BROKER", "tansu"),
        help="comma-separated brokers for the integration suite: tansu, kafka (default tansu)",
    )


def _kinds(config: pytest.Config) -> list[str]:
    kinds = [k.strip() for k in str(config.getoption("broker")).split(",") if k.strip()]
    for k in kinds:
        if k not in BROKER_KINDS:
            raise pytest.UsageError(f"--broker: unknown broker {k!r} (choose from tansu, kafka)")
    return kinds


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"canhbao integration brokers: {', '.join(_kinds(config))}", servers.status()]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # @pytest.mark.server("mosquitto"): a test whose server is not installed is skipped
    # with the reason before it starts anything (a broker ...); see tests/servers.py.
    for item in items:
        for mark in item.iter_markers("server"):
            for name in mark.args:
                reason = servers.skip_reason(name)
                if reason:
                    item.add_marker(pytest.mark.skip(reason=reason))


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("server"):
        for name in mark.args:
            servers.require(name)  # fails here when CI requires the server


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "broker" in metafunc.fixturenames:
        metafunc.parametrize("broker", _kinds(metafunc.config), indirect=True)


@dataclass(frozen=True)
class Broker:
    kind: str
    bootstrap: str


@pytest.fixture
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    """A fresh, empty broker for each test: no state leaks from one test to the next."""
    kind = request.param
    if kind == "tansu":
        with EmbeddedBroker(log_path=tmp_path / "tansu.log") as tansu:
            yield Broker("tansu", tansu.bootstrap)
        return
    yield from _apache_kafka(tmp_path / "kafka")


def _apache_kafka(state: Path) -> Iterator[Broker]:
    try:
        with apache_kafka(state, heap="-Xms128m -Xmx512m") as bootstrap:
            yield Broker("kafka", bootstrap)
    except KafkaStartError as exc:
        pytest.fail(str(exc))


def port_is_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0
