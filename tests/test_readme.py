"""The README is the user manual: every command block in it that can run without a
Kafka broker is run here, as a user would type it, so the manual cannot drift from
the program (issue 15, item 10).

- A ```bash block runs as one script (``set -e``) when every line of it is a command
  known to need no broker (``OFFLINE``); its exit status must be 0.
- A plain ``` block of ``$ command`` lines and their output runs each command and
  compares what it prints (stdout and stderr) with the lines shown. ``…`` stands for
  any text within a line, and a line of ``…`` alone for any number of lines. A
  trailing ``# exits N`` comment says the command is expected to exit with N.
- A block preceded by ``<!-- readme-test: skip: <reason> -->`` is not run, for that
  reason. Blocks needing a broker are skipped too; both show in the test summary.

Everything runs in a copy of the repository, with ``.venv/bin`` first on ``PATH``
(what ``source .venv/bin/activate`` does) and no ``CANHBAO_KAFKA_BOOTSTRAP``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
VENV_BIN = Path(sys.executable).parent
SKIP_MARK = re.compile(r"<!--\s*readme-test:\s*skip:\s*(.+?)\s*-->")

# Commands that need no broker (after an optional ".venv/bin/"); anything else is
# taken to need one, so a new command is never started against nothing by surprise.
OFFLINE = [
    re.compile(p)
    for p in (
        r"^canhbao rules (check|test|backtest)\b",
        r"^canhbao alerts render\b",
        r"^canhbao topics list\b",
        r"^canhbao simulate (--list\b|.*--dry-run\b)",
        r"^canhbao feed replay\b.*--dry-run\b",
        r"^canhbao\b.*\s--help\b",
        # Plain file handling around the commands (a scratch copy of the rules, say).
        r"^(rm|cp|mkdir|sed|cat|ls|echo) ",
    )
]


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    lang: str
    body: list[str]
    skip: str | None  # the reason of a readme-test skip mark

    @property
    def id(self) -> str:
        return f"README.md:{self.line}"


def blocks(text: str) -> list[Block]:
    out: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\S*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        before = [line for line in lines[:start] if line.strip()]
        mark = SKIP_MARK.search(before[-1]) if before else None
        out.append(Block(start + 1, fence.group(1), body, mark.group(1) if mark else None))
        i += 1
    return out


def _command(line: str) -> str:
    """A command line without its trailing comment and a leading .venv/bin/."""
    line = re.sub(r"\s+#.*$", "", line.strip())
    return line.removeprefix(".venv/bin/")


def offline(command: str) -> bool:
    return any(p.search(_command(command)) for p in OFFLINE)


def commands_of(block: Block) -> list[str]:
    if block.lang == "bash":
        return [line for line in block.body if line.strip() and not line.lstrip().startswith("#")]
    return [line[2:] for line in block.body if line.startswith("$ ")]


def command_blocks() -> list[Block]:
    found = blocks(README.read_text(encoding="utf-8"))
    return [b for b in found if b.lang == "bash" or (b.body and b.body[0].startswith("$ "))]


def matches(expected: list[str], actual: list[str]) -> bool:
    """``actual`` lines fit ``expected``: ``…`` is any text, a lone ``…`` any lines."""
    if not expected:
        return not actual
    head, rest = expected[0].rstrip(), expected[1:]
    if head.strip() == "…":
        return any(matches(rest, actual[k:]) for k in range(len(actual) + 1))
    if not actual:
        return False
    pattern = ".*".join(re.escape(part) for part in head.split("…"))
    return re.fullmatch(pattern, actual[0].rstrip()) is not None and matches(rest, actual[1:])


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of the repository (without its virtual environment, which is linked)."""
    root = tmp_path_factory.mktemp("readme") / "canhbao"
    ignore = shutil.ignore_patterns(
        ".venv", ".git", ".kafka", ".mypy_cache", ".pytest_cache", ".ruff_cache",
        "canhbao-data", "*.egg-info", "__pycache__", "backtest-report.html",
    )  # fmt: skip
    shutil.copytree(REPO, root, ignore=ignore)
    (root / ".venv").symlink_to(VENV_BIN.parent)
    yield root


def run(script: str, cwd: Path) -> tuple[int, str]:
    """Exit status and output (stdout and stderr, interleaved) of a bash script."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANHBAO_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        ["bash", "-c", "set -eo pipefail\n" + script], cwd=cwd, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
    )  # fmt: skip
    return done.returncode, done.stdout


def _exits(line: str) -> int:
    said = re.search(r"#\s*exits\s+(\d+)\s*$", line)
    return int(said.group(1)) if said else 0


def problems(block: Block, cwd: Path) -> list[str]:
    """What differs between the block and what its commands do (empty: nothing)."""
    if block.lang == "bash":
        status, printed = run("\n".join(block.body), cwd)
        return [] if status == 0 else [f"exited {status}:\n{printed}"]
    steps: list[tuple[str, list[str]]] = []  # "$ command", then the output shown
    for line in block.body:
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    found = []
    for command, shown in steps:
        status, printed = run(command, cwd)
        if status != _exits(command):
            found.append(f"{command!r} exited {status}:\n{printed}")
        elif not matches(shown, printed.splitlines()):
            found.append(
                f"{command!r} printed:\n{printed}\nbut the README shows:\n" + "\n".join(shown)
            )
    return found


@pytest.mark.parametrize("block", command_blocks(), ids=lambda b: b.id)
def test_a_readme_command_block_does_what_it_shows(block: Block, checkout: Path) -> None:
    needy = [c for c in commands_of(block) if not offline(c)]
    if needy:
        pytest.skip(f"{block.id}: needs a broker or a server: {_command(needy[0])}")
    found = problems(block, checkout)
    if block.skip:
        # A mark must not outlive its reason: once the block runs, the mark goes.
        assert found, f"{block.id} runs now: remove its readme-test skip mark"
        pytest.skip(f"{block.id}: marked: {block.skip}")
    assert not found, f"{block.id}: " + "\n".join(found)


def test_the_readme_runs_the_commands_a_new_user_tries_first() -> None:
    """The offline commands the README teaches are among those run above (so a change
    to the parser or the README cannot quietly make this file test nothing)."""
    ran = [
        _command(c) for b in command_blocks() if not b.skip for c in commands_of(b) if offline(c)
    ]
    for wanted in ("canhbao rules check", "canhbao rules test", "canhbao alerts render"):
        assert any(c.startswith(wanted) for c in ran), f"no README block runs {wanted!r}"


def test_output_matching_follows_the_readme_conventions() -> None:
    assert matches(["ok: 25 rules; version …"], ["ok: 25 rules; version ac280738c80d"])
    assert not matches(["ok: 25 rules; version …"], ["ok: 26 rules; version ac280738c80d"])
    assert matches(["first", "…", "last"], ["first", "a", "b", "last"])
    assert matches(["first", "…", "last"], ["first", "last"])
    assert not matches(["first", "last"], ["first", "extra", "last"])
    assert offline(".venv/bin/canhbao rules test rules/   # all of them")
    assert not offline("canhbao worker")
    assert not offline("make demo")
