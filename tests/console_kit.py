"""What the console's tests share: a warning and a broadcast to show, accounts with fast
password hashing, a writer that keeps what the console sends, and a browser's login."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from argon2 import PasswordHasher

from alerting.routes import Silence
from console.accounts import Accounts, Role
from console.board import Board
from topics.metrics import Metrics
from topics.models import (
    Agency,
    ApprovalEvent,
    Area,
    Command,
    Evidence,
    Warning,
)

PASSWORD = "correct horse battery"
NOW = datetime.now(UTC)
WID = "water.flood.dap-cau:dap-cau"
BID = f"{WID}:v4:citizens"
ROMAN = {0: "", 1: "I", 2: "II", 3: "III"}
LEVEL_AT = {0: 4.3, 1: 4.3, 2: 5.3, 3: 6.3}


#: Argon2 at its cheapest: the tests log in often; the console's own parameters are
#: tested in test_console_accounts.py.
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def accounts(path: Path, *names: tuple[str, Role]) -> Accounts:
    """An accounts database at ``path`` with ``names`` (name, role), or, when none are
    given, one account per role named after it and a second approver, "approver-2"."""
    found = Accounts(path, b"k" * 32, hasher=FAST)
    wanted = names or (*((r.value, r) for r in Role), ("approver-2", Role.APPROVER))
    for name, role in wanted:
        found.add(name, role, PASSWORD)
    return found


def make_warning(version: int = 1, level: int = 2, **over: Any) -> Warning:
    fields: dict[str, Any] = {
        "warning_id": WID, "version": version, "rule_id": "water.flood.dap-cau",
        "domain": "water", "hazard": "river_flood", "subject": "dap-cau",
        "transition": "raised", "level": level, "level_name": ROMAN[level],
        "severity": "Severe", "scope_tier": "province",
        "areas": [Area(code="bn-vu-ninh", name="Vũ Ninh", province="bn")],
        "lead_agency": Agency(code="snnmt", name_vi="Sở Nông nghiệp và Môi trường",
                              name_en="Department of Agriculture and Environment"),
        # The shipped rule's levels: I from 4.30 m, II from 5.30 m, III from 6.30 m.
        "evidence": [Evidence(station_id="dap-cau", metric="water_level_m",
                              value=LEVEL_AT[level] + 0.11, observed_at=NOW,
                              threshold=LEVEL_AT[level])],
        "raised_at": NOW, "updated_at": NOW + timedelta(seconds=version),
    }  # fmt: skip
    fields.update(over)
    return Warning(**fields)


@dataclass
class MemoryWriter:
    commands: list[Command] = field(default_factory=list)
    approvals: list[ApprovalEvent] = field(default_factory=list)
    silences: list[Silence] = field(default_factory=list)
    lifted: list[tuple[str, str]] = field(default_factory=list)

    async def command(self, command: Command) -> None:
        self.commands.append(command)

    async def approval(self, event: ApprovalEvent) -> None:
        self.approvals.append(event)

    async def silence(self, silence: Silence) -> None:
        self.silences.append(silence)

    async def unsilence(self, silence_id: str, actor: str) -> None:
        self.lifted.append((silence_id, actor))


@dataclass
class Console:
    client: TestClient[Any, Any]
    board: Board
    writer: MemoryWriter
    accounts: Accounts
    metrics: Metrics

    def count(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


async def login(client: TestClient[Any, Any], name: str, password: str = PASSWORD) -> Any:
    page = await (await client.get("/login")).text()
    nonce = re.search(r'name="nonce" value="([^"]+)"', page)
    assert nonce is not None
    return await client.post(
        "/login",
        data={"name": name, "password": password, "nonce": nonce.group(1), "next": "/"},
        allow_redirects=False,
    )


async def csrf_of(client: TestClient[Any, Any]) -> str:
    page = await (await client.get("/")).text()
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)
