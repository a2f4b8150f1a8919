"""Fixtures for the unit suite: readings, the shipped directory and rules, and a clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from alerting.directory import Directory
from console.board import Board
from console.web import make_app
from pipeline.lifecycle import Context
from pipeline.rules.loader import RuleSet, load_rules
from pipeline.rules.model import Rule
from tests.console_kit import BID, Console, MemoryWriter, accounts, make_warning
from tests.unit.stage_kit import Outputs
from topics.metrics import Metrics
from topics.models import Broadcast, Channel, Reading

REPO = Path(__file__).resolve().parents[2]
ICT = timezone(timedelta(hours=7))
T0 = datetime(2025, 10, 7, 0, 0, tzinfo=ICT)
DAP_CAU_RULE = "water.flood.dap-cau"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def t0() -> datetime:
    """A fixed, timezone-aware instant (Vietnam time) that every test counts from."""
    return T0


@pytest.fixture(scope="session")
def directory() -> Directory:
    return Directory.load(REPO / "config" / "geography.yaml", REPO / "config" / "directory.yaml")


@pytest.fixture(scope="session")
def ruleset() -> RuleSet:
    return load_rules(REPO / "rules")


@pytest.fixture(scope="session")
def dap_cau(ruleset: RuleSet) -> Rule:
    (rule,) = [r for r in ruleset.rules if r.id == DAP_CAU_RULE]
    return rule


@pytest.fixture
def ctx(directory: Directory) -> Context:
    return Context(directory=directory)


@pytest.fixture
def make_reading() -> Callable[..., Reading]:
    """Build a river-level reading at Đáp Cầu; ``minutes`` counts from ``T0``."""

    def build(value: float = 4.0, minutes: float = 0, **overrides: Any) -> Reading:
        fields: dict[str, Any] = {
            "station_id": "dap-cau",
            "domain": "water",
            "metric": "water_level_m",
            "value": value,
            "unit": "m",
            "observed_at": T0 + timedelta(minutes=minutes),
            "source": "test",
            "area": "bn-vu-ninh",
        }
        fields.update(overrides)
        return Reading(**fields)

    return build


@pytest.fixture
def reading_dict() -> Callable[..., dict[str, Any]]:
    """A valid reading as a JSON-ready dict, with overrides (``None`` drops a field)."""

    def build(**overrides: Any) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schema_version": 1,
            "station_id": "dap-cau",
            "domain": "water",
            "metric": "water_level_m",
            "value": 4.35,
            "unit": "m",
            "observed_at": "2025-10-07T00:00:00+07:00",
            "source": "test",
        }
        for k, v in overrides.items():
            if v is None:
                data.pop(k, None)
            else:
                data[k] = v
        return data

    return build


# --- Rule sets built inside the tests (independent of the shipped rules/ folder) ------

# A copy of the shipped Đáp Cầu rule, so that engine tests do not depend on rules/.
FLOOD_RULE_YAML = """\
  - id: water.flood.dap-cau
    domain: water
    hazard: river_flood
    selector: {station: dap-cau, metric: water_level_m}
    condition: {kind: threshold, direction: rising, hysteresis: 0.10}
    levels:
      - {level: 1, name: "I", value: 4.30, severity: Moderate}
      - {level: 2, name: "II", value: 5.30, severity: Severe}
      - {level: 3, name: "III", value: 6.30, severity: Extreme}
"""


@pytest.fixture
def compile_yaml() -> Callable[..., RuleSet]:
    """Compile rule-file bodies (``rules:`` is prepended when missing); ``files`` adds
    other sources, e.g. baseline CSVs, by name."""
    from pipeline.rules.loader import compile_rules

    def build(*bodies: str, files: dict[str, str] | None = None) -> RuleSet:
        sources: dict[str, str] = {}
        for i, body in enumerate(bodies):
            text = body if body.lstrip().startswith(("rules:", "quality:")) else "rules:\n" + body
            sources[f"rules-{i}.yaml"] = text
        sources.update(files or {})
        return compile_rules(sources)

    return build


@pytest.fixture
def make_engine(directory: Directory, compile_yaml: Callable[..., RuleSet]) -> Callable[..., Any]:
    """An ``Engine`` over rules compiled from YAML bodies (see ``compile_yaml``)."""
    from pipeline.engine import Engine

    def build(*bodies: str, files: dict[str, str] | None = None) -> Engine:
        return Engine(compile_yaml(*bodies, files=files), directory)

    return build


def worker_app(settings: Any) -> Any:
    """The worker's Faust app as ``canhbao worker`` builds it from ``settings`` (on a
    broker that is never reached, with metrics of its own)."""
    from prometheus_client import CollectorRegistry

    from canhbao.worker import worker_config
    from pipeline.worker.app import build_app
    from topics.metrics import Metrics

    return build_app(
        worker_config(settings),
        "127.0.0.1:9",
        load_rules(settings.rules_path),
        Metrics(CollectorRegistry()),
    )


class MemoryTable(dict[str, Any]):
    """A Faust table as a stage sees it, in a dict: its local data is itself."""

    @property
    def data(self) -> dict[str, Any]:
        return self


# The stages' tests (test_stage_*.py): what a stage sends, and its table.


@pytest.fixture
def out() -> Outputs:
    """What the stage under test sent, by topic (tests/unit/stage_kit.py)."""
    return Outputs()


@pytest.fixture
def table() -> MemoryTable:
    return MemoryTable()


# -- the console's web application on an in-memory board and writer ---------------------


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    people = accounts(tmp_path / "console.db")
    board = Board()
    board.apply_warning(make_warning())
    board.broadcasts[BID] = Broadcast(
        broadcast_id=BID, warning=make_warning(level=3), communes=["bn-vu-ninh"],
        channels=[Channel.SMS, Channel.LOUDSPEAKER], requested_at=datetime.now(UTC),
        # By the wall clock when the test runs (approvals expire by it), not at import.
        expires_at=datetime.now(UTC) + timedelta(minutes=30),
    )  # fmt: skip
    board.requesters[BID] = "canhbao"
    writer = MemoryWriter()
    metrics = Metrics(CollectorRegistry())
    client = TestClient(TestServer(make_app(people, board, writer, metrics=metrics)))
    await client.start_server()
    try:
        yield Console(client, board, writer, people, metrics)
    finally:
        await client.close()
