"""The external servers some tests run against (Debian packages, not Python ones).

One place says what each server is, how to find its binary and which Debian package
brings it. A test asks for a server with :func:`require`: it gets the binary's path,
or the test is skipped with the reason and the command that installs it. A fresh
machine therefore runs ``make test`` green, and says what it did not test.

CI must not skip silently: ``.ci/run`` installs every package listed here
(``python3 tests/servers.py --missing`` prints those not installed yet) and sets
``CANHBAO_TEST_SERVERS=required``, which turns a missing server into a failure.

To add a server (PostgreSQL, Chromium ...), add a :class:`Server` to ``SERVERS`` and
start it in a fixture that calls ``require("<name>")``; CI then installs it.

This file runs with the system Python too (``.ci/run`` calls it before the virtual
environment exists), so it imports pytest only when a test asks for a server.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REQUIRED_ENV = "CANHBAO_TEST_SERVERS"


@dataclass(frozen=True)
class Server:
    name: str
    package: str  # the Debian package that brings it
    binaries: tuple[str, ...]  # names on PATH, then absolute paths (globs allowed)
    used_for: str

    def find(self) -> str | None:
        """The binary's path, or None when it is not installed."""
        for candidate in self.binaries:
            if "/" not in candidate:
                found = shutil.which(candidate)
                if found:
                    return found
                continue
            for path in sorted(glob.glob(candidate), reverse=True):  # newest version first
                if os.access(path, os.X_OK):
                    return path
        return None

    def missing_reason(self) -> str:
        return (
            f"{self.name} is not installed ({self.used_for}); "
            f"install it with: sudo apt-get install {self.package}  (or: make test-servers)"
        )


SERVERS: dict[str, Server] = {
    s.name: s
    for s in (
        Server(
            name="mosquitto",
            package="mosquitto",
            # Debian installs the broker in /usr/sbin, which is not on a user's PATH.
            binaries=("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"),
            used_for="the MQTT broker of the MQTT bridge and the loudspeaker channel",
        ),
        Server(
            name="xmlsec1",
            package="xmlsec1",
            binaries=("xmlsec1",),
            used_for="the standard XML-DSig verifier partners check signed CAP with",
        ),
        Server(
            name="chromium",
            package="chromium",
            # Debian's browser, which Playwright drives (its own download is not used).
            binaries=("chromium", "/usr/bin/chromium", "chromium-browser"),
            used_for="the operator console's browser tests (Playwright)",
        ),
        Server(
            name="postgresql",
            package="postgresql",
            # Debian keeps the server's tools per major version, off PATH.
            binaries=("/usr/lib/postgresql/*/bin/initdb", "initdb"),
            used_for="the threat record's production database (canhbao record on PostgreSQL)",
        ),
        Server(
            name="promtool",
            package="prometheus",
            # Prometheus' own checker of its configuration, alert rules and rule tests.
            binaries=("promtool",),
            used_for="checking infra/prometheus (promtool check config, check rules, test rules)",
        ),
        Server(
            name="alertmanager",
            package="prometheus-alertmanager",
            binaries=("prometheus-alertmanager",),
            used_for="canhbao bench's side-by-side with Prometheus Alertmanager",
        ),
    )
}


def skip_reason(name: str) -> str | None:
    """Why a test needing ``name`` is skipped; None when it runs (the server is there,
    or CI requires it and :func:`require` will fail instead)."""
    server = SERVERS[name]
    if server.find() is not None or os.environ.get(REQUIRED_ENV) == "required":
        return None
    return server.missing_reason()


def require(name: str) -> str:
    """The path of server ``name``'s binary; skips the calling test when it is not
    installed (fails instead when ``CANHBAO_TEST_SERVERS=required``, as in CI)."""
    import pytest

    server = SERVERS[name]
    path = server.find()
    if path is not None:
        return path
    if os.environ.get(REQUIRED_ENV) == "required":
        pytest.fail(f"{server.missing_reason()}; {REQUIRED_ENV}=required", pytrace=False)
    pytest.skip(server.missing_reason())


def status() -> str:
    """One line for the test report's header: which servers are there."""
    parts = []
    for server in SERVERS.values():
        path = server.find()
        parts.append(f"{server.name} {path}" if path else f"{server.name} MISSING (skipped)")
    return "external servers: " + ", ".join(parts)


def missing_packages() -> list[str]:
    return sorted({s.package for s in SERVERS.values() if s.find() is None})


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 10) -> None:
    """Until 127.0.0.1:``port`` accepts connections; AssertionError if ``proc`` exits or
    the time is up (an installed server that does not start is a real failure)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with status {proc.returncode} before listening")
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:g} s")


def start_mosquitto(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    """Debian's mosquitto on 127.0.0.1:``port``, anonymous, in memory; listening when
    this returns. Skips the test when mosquitto is not installed."""
    binary = require("mosquitto")
    conf = tmp / f"mosquitto-{port}.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen(
        [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for_port(port, proc, "mosquitto")
    return proc


@contextlib.contextmanager
def mosquitto(tmp: Path) -> Iterator[int]:
    """A mosquitto broker for the length of the block; yields its port."""
    from canhbao.broker import free_port

    port = free_port()
    proc = start_mosquitto(tmp, port)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def _as_postgres_user() -> list[str]:
    """PostgreSQL refuses to run as root: as root (CI), run it as Debian's ``postgres``
    user (the package creates it); otherwise as ourselves."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    return [runuser, "-u", "postgres", "--"]


@contextlib.contextmanager
def postgresql() -> Iterator[str]:
    """A throw-away PostgreSQL cluster (initdb + pg_ctl) on a free port for the length
    of the block; yields its SQLAlchemy URL. Skips the test when PostgreSQL is not
    installed. Its files live in a fresh temporary directory, removed at the end."""
    import tempfile

    from canhbao.broker import free_port

    initdb = require("postgresql")
    bindir = Path(initdb).parent
    as_user = _as_postgres_user()
    root = Path(tempfile.mkdtemp(prefix="canhbao-pg-"))
    data = root / "data"
    if as_user:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    run = [*as_user]
    try:
        subprocess.run(
            [*run, str(bindir / "initdb"), "-D", str(data), "-U", "canhbao", "--auth=trust",
             "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True,
        )  # fmt: skip
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [*run, str(bindir / "pg_ctl"), "-D", str(data), "-o", options,
             "-l", str(root / "postgresql.log"), "-w", "-t", "30", "start"],
            check=True, capture_output=True,
        )  # fmt: skip
        yield f"postgresql+asyncpg://canhbao@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [*run, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True,
            )
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--missing"]:
        print(" ".join(missing_packages()))
    else:
        print(status())
