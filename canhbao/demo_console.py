"""The demo's operator console: its accounts (an operator and two approvers, fresh
random passwords each run, in the demo's own data directory), the console as one more
child process, and the ``/metrics`` address of every part the demo runs."""

from __future__ import annotations

import asyncio
import secrets
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from canhbao.broker import embedded_env
from canhbao.processes import Child
from console.accounts import Accounts, Role

# Two approvers: the two-person rule needs two accounts other than the requester's.
DEMO_ACCOUNTS = (
    ("truc-ban", Role.OPERATOR),
    ("pho-ban-a", Role.APPROVER),
    ("pho-ban-b", Role.APPROVER),
)


@dataclass(frozen=True)
class DemoAccount:
    name: str
    password: str
    role: Role

    def line(self) -> str:
        """``account: <name> <password> (<role>)``, as the demo prints it."""
        return f"account: {self.name} {self.password} ({self.role.value})"


def make_accounts(db: Path) -> list[DemoAccount]:
    """The demo's accounts in a new console database, each with a random password
    (urlsafe, no spaces: it is printed between the name and the role)."""
    db.parent.mkdir(parents=True, exist_ok=True)
    accounts = Accounts(db, secrets.token_bytes(32), 8 * 3600)
    made = []
    for name, role in DEMO_ACCOUNTS:
        password = secrets.token_urlsafe(12)
        accounts.add(name, role, password)
        made.append(DemoAccount(name, password, role))
    return made


def console_child(
    bootstrap: str, embedded: bool, rebalance: float, db: Path, port: int, log: Path
) -> Child:
    """``canhbao console`` on 127.0.0.1:``port`` with the demo's accounts."""
    return Child(
        "console",
        ["console", "--host", "127.0.0.1", "--port", str(port)],
        {
            "CANHBAO_KAFKA_BOOTSTRAP": bootstrap,
            "CANHBAO_CONSOLE_DB": str(db),
            # One secret for the run: a console started again keeps its sessions.
            "CANHBAO_CONSOLE_SESSION_SECRET": secrets.token_hex(32),
            **(embedded_env() if embedded else {}),
            "CANHBAO_REBALANCE_TIMEOUT": str(rebalance),
            "CANHBAO_LOG_LEVEL": "warning",
        },
        log,
    )


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


async def wait_until_answers(url: str, within: float, child: Child) -> bool:
    """True once ``url`` answers 200; False after ``within`` seconds or if ``child``
    died meanwhile (its restart is the supervisor's business)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and child.dead() is None:
        if await asyncio.to_thread(answers, url):
            return True
        await asyncio.sleep(0.3)
    return False
