"""canhbao commands as child processes (the demo's and the benchmark's worker and
dispatcher): started with their output in a log file, stopped as a user would, and
(``Child``) started again when one dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

CANHBAO = [sys.executable, "-m", "canhbao"]


def spawn(
    args: list[str],
    env: dict[str, str],
    log: Path,
    *,
    append: bool = False,
    program: list[str] = CANHBAO,
) -> subprocess.Popen[bytes]:
    """``canhbao ARGS`` (or ``program ARGS``) with ``env`` added to this process's
    environment."""
    with open(log, "ab" if append else "wb") as out:  # the child keeps its own copy
        return subprocess.Popen(
            [*program, *args],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM (a clean shutdown), then SIGKILL if it is not gone within ``timeout``."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def how_it_ended(returncode: int) -> str:
    """'exited with 1', 'killed by SIGKILL'."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with {returncode}"


class Child:
    """One canhbao command as a child process that its parent starts again when it
    dies; its log file keeps the output of every start, one after the other."""

    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        log: Path,
        program: list[str] = CANHBAO,
    ) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log = log
        self.program = program
        self.proc: subprocess.Popen[bytes] | None = None
        self.ends: list[str] = []  # how each earlier run ended

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def restarts(self) -> int:
        return len(self.ends)

    def start(self) -> None:
        self.proc = spawn(
            self.args, self.env, self.log, append=self.proc is not None, program=self.program
        )

    def dead(self) -> str | None:
        """How it ended, if it has (None while it runs)."""
        if self.proc is None or self.proc.poll() is None:
            return None
        return how_it_ended(self.proc.returncode)

    def restart(self) -> str:
        """Start it again after it died; returns how the run before ended."""
        ended = self.dead()
        assert ended is not None, f"{self.name} is still running"
        self.ends.append(ended)
        with open(self.log, "ab") as out:
            out.write(f"\n--- {self.name} {ended}; started again ---\n".encode())
        self.start()
        return ended

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is not None:
            stop(self.proc, timeout)
