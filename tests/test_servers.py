"""A test whose external server (Debian's mosquitto ...) is not installed is skipped
with the reason and the command that installs it: never a failure, never a traceback
(issue 15, item 6). CI asks for the opposite: there a missing server fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests import servers
from tests.integration import edges

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_mosquitto(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without mosquitto, whatever this one has."""
    absent = servers.Server("mosquitto", "mosquitto", ("/nonexistent/mosquitto",), "MQTT")
    monkeypatch.setitem(servers.SERVERS, "mosquitto", absent)
    monkeypatch.delenv(servers.REQUIRED_ENV, raising=False)


def test_without_the_server_a_test_is_skipped_with_the_reason_and_the_fix(
    no_mosquitto: None, tmp_path: Path
) -> None:
    for start in (edges.mosquitto(tmp_path), servers.mosquitto(tmp_path)):
        with pytest.raises(pytest.skip.Exception) as info, start:
            pass
        assert "mosquitto is not installed" in str(info.value)
        assert "apt-get install mosquitto" in str(info.value)
    with pytest.raises(pytest.skip.Exception):
        servers.start_mosquitto(tmp_path, 1883)  # no FileNotFoundError
    assert servers.skip_reason("mosquitto") is not None
    assert "mosquitto" in servers.missing_packages()
    assert "mosquitto MISSING" in servers.status()


def test_ci_requires_every_server(
    no_mosquitto: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(servers.REQUIRED_ENV, "required")
    assert servers.skip_reason("mosquitto") is None  # not skipped: failed
    with pytest.raises(pytest.fail.Exception, match="apt-get install mosquitto"):
        servers.require("mosquitto")


def test_an_installed_server_is_found_on_path_or_by_its_absolute_path(tmp_path: Path) -> None:
    binary = tmp_path / "sbin" / "fake-server"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    by_glob = servers.Server("fake", "fake", ("no-such-name", str(tmp_path / "*/fake-server")), "x")
    assert by_glob.find() == str(binary)
    assert servers.Server("sh", "dash", ("sh",), "x").find() is not None


def test_ci_installs_what_the_registry_lists() -> None:
    """.ci/run installs the packages tests/servers.py names, with the system Python."""
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "tests/servers.py --missing" in ci
    assert f"{servers.REQUIRED_ENV}=required" in ci
    out = subprocess.run(
        [sys.executable, "-I", str(REPO / "tests" / "servers.py"), "--missing"],
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    assert set(out.stdout.split()) <= {s.package for s in servers.SERVERS.values()}
