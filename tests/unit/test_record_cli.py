"""``canhbao db`` and ``canhbao history`` on a recorded scenario (SQLite)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

import pytest

from canhbao.cli import main
from recorder import migrate
from recorder.decode import decode
from recorder.store import Store
from tests.record_db import incoming
from tests.record_stream import stream


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    db = tmp_path / "record.db"
    monkeypatch.setenv("CANHBAO_DATABASE_URL", f"sqlite+aiosqlite:///{db}")
    assert main(["db", "upgrade"]) == 0

    async def fill() -> None:
        store = Store.open(f"sqlite+aiosqlite:///{db}")
        records = incoming(stream())
        await store.apply("g", decode(records), {})
        await store.close()

    asyncio.run(fill())
    return db


def test_db_upgrade_creates_the_schema_then_says_it_is_up_to_date(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CANHBAO_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    assert main(["db", "current"]) == 1
    head = migrate.head()
    assert f"schema (empty), this canhbao writes {head}: run canhbao db upgrade" in (
        capsys.readouterr().out
    )
    assert main(["db", "upgrade"]) == 0
    assert f"schema (empty) → {head}" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert "already up to date" in capsys.readouterr().out
    assert main(["db", "current"]) == 0


def test_a_database_password_is_never_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from canhbao.settings import get_settings
    from recorder.migrate import safe_url

    monkeypatch.setenv("CANHBAO_DATABASE_URL", "postgresql+asyncpg://rec:s3cret@db.example/x")
    settings = get_settings()
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in safe_url(settings.record_url())


def test_warnings_by_commune_and_level_as_json(
    recorded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["history", "warnings", "--json", "--commune", "bn-dap-cau", "--level", "3"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows, "level-III warnings at Đáp Cầu were recorded"
    assert all(r["level"] == 3 and "bn-dap-cau" in r["communes"] for r in rows)
    # 12 warnings over 4 communes, two communes each: half of them touch Đáp Cầu.
    assert len(rows) == 6
    assert rows == sorted(rows, key=lambda r: r["updated_at"])


def test_warnings_latest_text_and_csv(recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "warnings", "--latest", "--domain", "water"]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert len(lines) == 8 and "(8 found)" in out.err  # 12 warnings, 4 of them air quality
    assert all(" v3 " in line and "water/river_flood level III" in line for line in lines)
    assert main(["history", "warnings", "--csv", "--since", "2025-10-14T10:05:10",
                 "--until", "2025-10-14T10:07:10"]) == 0  # fmt: skip
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    # 10:05:10-10:07:10 Vietnam time is 03:05:10-03:07:10 UTC: warnings 5 and 6, three states each.
    assert sorted({r["warning_id"] for r in table}) == ["water.flood.5:st-5", "water.flood.6:st-6"]
    assert len(table) == 6


def test_actions_by_person(recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "actions", "--actor", "an.nguyen", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    kinds = sorted({(r["kind"], r["action"]) for r in rows})
    assert kinds == [("approval", "approve"), ("command", "verify")]
    assert len([r for r in rows if r["kind"] == "command"]) == 6
    assert main(["history", "actions", "--kind", "rules"]) == 0
    assert "chi.le" in capsys.readouterr().out


def test_failed_and_slow_deliveries(recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "deliveries", "--failed", "--json"]) == 0
    failed = json.loads(capsys.readouterr().out)
    assert [(r["warning_id"], r["channel"], r["attempt"]) for r in failed] == [
        ("water.flood.5:st-5", "email", 2)
    ]
    assert main(["history", "deliveries", "--slower-than", "30s", "--json"]) == 0
    slow = json.loads(capsys.readouterr().out)
    assert slow and {r["warning_id"] for r in slow} == {"water.flood.7:st-7"}
    assert all(r["delay_seconds"] > 30 for r in slow)


def test_one_warnings_timeline(recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "warning", "water.flood.3:st-3"]) == 0
    out = capsys.readouterr().out
    assert out.count("STATE") == 3 and "ACTION    an.nguyen: command/verify" in out
    assert "BROADCAST water.flood.3:st-3:v3:citizens sent, approved by an.nguyen, binh.tran" in out
    assert "DELIVERY  delivered" in out
    assert main(["history", "warning", "nothing:here"]) == 1
    assert "nothing recorded about nothing:here" in capsys.readouterr().err


def test_the_recorder_refuses_a_database_without_its_schema_and_says_what_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CANHBAO_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'new.db'}")
    monkeypatch.setenv("CANHBAO_KAFKA_BOOTSTRAP", "127.0.0.1:9")  # never reached
    assert main(["record"]) == 2
    err = capsys.readouterr().err
    assert "has no schema yet: run `canhbao db upgrade` first" in err


def test_a_database_that_cannot_be_reached_is_named_without_its_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from canhbao.broker import free_port

    url = f"postgresql+asyncpg://rec:s3cret@127.0.0.1:{free_port()}/record"
    monkeypatch.setenv("CANHBAO_DATABASE_URL", url)
    with pytest.raises(SystemExit) as ended:
        main(["history", "warnings"])
    assert ended.value.code == 2
    err = capsys.readouterr().err
    assert "cannot be reached" in err and "rec:***@127.0.0.1" in err and "s3cret" not in err


def test_record_tokens_add_list_remove(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tokens.yaml"
    monkeypatch.setenv("CANHBAO_RECORD_API_TOKENS_PATH", str(path))
    assert main(["record-tokens", "add", "syt", "--domain", "health", "--area", "bn-vu-ninh"]) == 0
    out = capsys.readouterr()
    token = out.out.split(": ", 1)[1].strip()
    assert len(token) >= 40 and token not in path.read_text()
    assert "shown once" in out.err
    assert main(["record-tokens", "add", "syt"]) == 1
    assert "already has a token" in capsys.readouterr().err
    assert main(["record-tokens", "add", "x", "--domain", "weather"]) == 2
    assert main(["record-tokens", "list"]) == 0
    assert "syt" in capsys.readouterr().out
    assert main(["record-tokens", "remove", "syt"]) == 0
    assert main(["record-tokens", "remove", "syt"]) == 1
