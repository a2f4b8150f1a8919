"""The command line's ``--actor`` is a name anyone can type: it does not approve a
citizen broadcast unless an admin allowed command-line approvals (issue 10)."""

from __future__ import annotations

import pytest

from canhbao.cli import main
from canhbao.operator_cli import cli_approval_refusal

BID = "water.flood.dap-cau:dap-cau:v4:citizens"


def test_a_cli_approval_is_refused_and_points_to_the_console(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CANHBAO_ALLOW_CLI_APPROVALS", raising=False)
    # A broker nobody answers on: a refused approval must not even try to send.
    monkeypatch.setenv("CANHBAO_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    assert main(["alerts", "approve", BID, "--actor", "Trực ban A"]) == 2
    err = capsys.readouterr().err
    assert "refused" in err
    assert "canhbao console" in err
    assert "CANHBAO_ALLOW_CLI_APPROVALS=true" in err


def test_an_admin_can_allow_cli_approvals(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CANHBAO_ALLOW_CLI_APPROVALS", "true")
    monkeypatch.delenv("CANHBAO_KAFKA_BOOTSTRAP", raising=False)
    # Allowed, it goes on to the cluster (here: none is configured, and it says so).
    assert main(["alerts", "approve", BID, "--actor", "Trực ban A"]) == 2
    err = capsys.readouterr().err
    assert "refused" not in err
    assert "needs CANHBAO_KAFKA_BOOTSTRAP" in err


def test_a_cancel_stays_possible_from_the_command_line() -> None:
    # Stopping a message must never wait for a console: only approvals are refused.
    assert cli_approval_refusal("cancel", allowed=False) is None
    assert cli_approval_refusal("approve", allowed=False) is not None
    assert cli_approval_refusal("approve", allowed=True) is None
