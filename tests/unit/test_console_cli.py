"""``canhbao users``: accounts added, listed and disabled from the command line, with
clear errors and exit status 1 for what cannot be done."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from canhbao.cli import main


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CANHBAO_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("CANHBAO_CONSOLE_DB", raising=False)
    return tmp_path


def users(monkeypatch: pytest.MonkeyPatch, *args: str, stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(["users", *args])


def test_users_add_list_disable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], data_dir: Path
) -> None:
    assert users(monkeypatch, "add", "pho-ban-b", "--role", "approver", "--password-stdin",
                 stdin="một mật khẩu đủ dài\n") == 0  # fmt: skip
    assert "added pho-ban-b (approver)" in capsys.readouterr().out
    assert (data_dir / "console.db").exists()
    assert users(monkeypatch, "list") == 0
    assert capsys.readouterr().out.split() == ["pho-ban-b", "approver", "active"]
    assert users(monkeypatch, "disable", "pho-ban-b") == 0
    users(monkeypatch, "list")
    assert "disabled" in capsys.readouterr().out


def test_users_errors_say_why_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert users(monkeypatch, "add", "a-b", "--role", "viewer", "--password-stdin",
                 stdin="short\n") == 1  # fmt: skip
    assert "at least 12 characters" in capsys.readouterr().err
    assert users(monkeypatch, "disable", "nobody") == 1
    assert "no account nobody" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse refuses a role that does not exist
        users(monkeypatch, "add", "a-b", "--role", "chief", "--password-stdin")
