"""Configuration files read one way: YAML through libyaml, or JSON when the file is
JSON (how another system exports thousands of stations)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alerting.directory import Directory
from topics import yamlio

REPO = Path(__file__).resolve().parents[2]


def test_a_geography_exported_as_json_gives_the_same_directory(tmp_path: Path) -> None:
    geography = REPO / "config" / "geography.yaml"
    as_json = tmp_path / "geography.json"
    as_json.write_text(json.dumps(yamlio.safe_load(geography.read_text("utf-8"))), "utf-8")
    directory = REPO / "config" / "directory.yaml"
    from_yaml = Directory.load(geography, directory)
    from_json = Directory.load(as_json, directory)
    assert from_json.geography == from_yaml.geography
    assert from_json.agencies == from_yaml.agencies


def test_yaml_flow_style_that_is_not_json_is_still_yaml() -> None:
    assert yamlio.safe_load("{station: dap-cau, levels: [1, 2]}") == {
        "station": "dap-cau",
        "levels": [1, 2],
    }


def test_text_that_is_neither_is_refused_as_yaml() -> None:
    with pytest.raises(yamlio.YAMLError):
        yamlio.safe_load("{station: [dap-cau")


def test_unsafe_tags_are_refused() -> None:
    with pytest.raises(yamlio.YAMLError):
        yamlio.safe_load("!!python/object/apply:os.system ['true']")
