"""Where a worker keeps its local files: under ``CANHBAO_DATA_DIR``, one directory
per app id, never in whatever directory the worker was started from."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from canhbao.settings import Settings
from pipeline.app import build_app
from pipeline.rules.loader import load_rules


def test_worker_files_go_under_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    settings = Settings(data_dir=tmp_path / "data", app_id="canhbao-bench-1a2b3c")
    app = build_app(settings, "127.0.0.1:9", load_rules(settings.rules_path))
    assert Path(app.conf.datadir) == tmp_path / "data" / "worker" / "canhbao-bench-1a2b3c"
    assert Path(app.conf.tabledir).is_relative_to(tmp_path / "data")
    assert os.listdir(cwd) == []  # nothing left where the worker was started
