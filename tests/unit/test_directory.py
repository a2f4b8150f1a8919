"""Reference data loading (alerting.directory): env expansion and cross-checks."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from alerting.directory import ConfigError, Directory, expand_env
from topics.models import Channel, Domain

GEOGRAPHY = """\
provinces:
  - {code: bac-ninh, name: Bắc Ninh}
communes:
  - {code: bn-vu-ninh, name: Phường Vũ Ninh, province: bac-ninh}
  - {code: bn-kinh-bac, name: Phường Kinh Bắc, province: bac-ninh}
stations:
  - {id: dap-cau, name: Đáp Cầu, commune: bn-vu-ninh, warns: [bn-vu-ninh, bn-kinh-bac],
     owner: snnmt, domain: water, metrics: [water_level_m]}
"""

DIRECTORY = """\
agencies:
  - code: snnmt
    name_vi: Sở Nông nghiệp và Môi trường
    name_en: Department of Agriculture and Environment
    leads: [water]
    receivers:
      - id: snnmt-webhook
        channel: webhook
        address: "${TEST_CANHBAO_BASE:-http://127.0.0.1:8787}/hooks/snnmt"
"""


def _write(tmp_path: Path, geography: str = GEOGRAPHY, directory: str = DIRECTORY):
    geo = tmp_path / "geography.yaml"
    dire = tmp_path / "directory.yaml"
    geo.write_text(textwrap.dedent(geography), encoding="utf-8")
    dire.write_text(textwrap.dedent(directory), encoding="utf-8")
    return geo, dire


def test_expand_uses_env_when_set() -> None:
    env = {"BASE": "https://soc.example.vn"}
    assert expand_env("${BASE:-http://localhost}/hooks", env) == "https://soc.example.vn/hooks"


def test_expand_uses_default_when_unset() -> None:
    assert expand_env("${BASE:-http://localhost:8787}/hooks", {}) == "http://localhost:8787/hooks"


def test_expand_plain_variable() -> None:
    assert expand_env("a ${X} b ${Y:-y}", {"X": "1"}) == "a 1 b y"


def test_expand_empty_default() -> None:
    assert expand_env("[${X:-}]", {}) == "[]"


def test_expand_leaves_text_without_variables_alone() -> None:
    text = "price: $5, {braces}, $HOME, ${lowercase}"
    assert expand_env(text, {}) == text


def test_unset_variable_without_default_names_it() -> None:
    with pytest.raises(ConfigError, match="CANHBAO_SMS_GATEWAY"):
        expand_env("url: ${CANHBAO_SMS_GATEWAY}", {})


def test_expand_reads_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_CANHBAO_BASE", "https://hooks.example.vn")
    assert expand_env("${TEST_CANHBAO_BASE:-x}") == "https://hooks.example.vn"
    monkeypatch.delenv("TEST_CANHBAO_BASE")
    assert expand_env("${TEST_CANHBAO_BASE:-x}") == "x"


def test_empty_variable_falls_back_to_default() -> None:
    assert expand_env("${BASE:-http://127.0.0.1:8787}/hooks/snnmt", {"BASE": ""}) == (
        "http://127.0.0.1:8787/hooks/snnmt"
    )


def test_shipped_directory_loads(directory: Directory) -> None:
    assert {"snnmt", "syt", "ca-tinh", "sct", "bchqs"} <= set(directory.agencies)
    assert directory.lead_for(Domain.WATER).code == "snnmt"
    station = directory.station("dap-cau")
    assert station is not None
    assert station.warns == ["bn-vu-ninh", "bn-kinh-bac"]
    assert directory.station("nowhere") is None
    area = directory.area("bn-vu-ninh")
    assert (area.name, area.province) == ("Phường Vũ Ninh", "Bắc Ninh")
    assert directory.province_of("hp-pha-lai") == "hai-phong"


def test_every_domain_has_a_lead(directory: Directory) -> None:
    for domain in Domain:
        assert directory.lead_for(domain).code


def test_unknown_lookups_name_what_is_missing(directory: Directory) -> None:
    with pytest.raises(KeyError, match="bn-nowhere"):
        directory.area("bn-nowhere")
    with pytest.raises(KeyError, match="bn-nowhere"):
        directory.province_of("bn-nowhere")
    with pytest.raises(KeyError, match="ubnd"):
        directory.agency("ubnd")


def test_load_expands_env_in_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_CANHBAO_BASE", "https://hooks.example.vn")
    d = Directory.load(*_write(tmp_path))
    (receiver,) = d.agency("snnmt").receivers
    assert receiver.channel is Channel.WEBHOOK
    assert receiver.address == "https://hooks.example.vn/hooks/snnmt"


def test_load_uses_default_when_env_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("TEST_CANHBAO_BASE", raising=False)
    d = Directory.load(*_write(tmp_path))
    assert d.agency("snnmt").receivers[0].address == "http://127.0.0.1:8787/hooks/snnmt"


def test_station_with_unknown_commune_is_reported(tmp_path: Path) -> None:
    geo, dire = _write(tmp_path, geography=GEOGRAPHY.replace("bn-kinh-bac]", "bn-kinh-bacc]"))
    with pytest.raises(ConfigError) as exc:
        Directory.load(geo, dire)
    msg = str(exc.value)
    assert str(geo) in msg
    assert "station dap-cau" in msg
    assert "unknown commune 'bn-kinh-bacc'" in msg


def test_station_with_unknown_owner_is_reported(tmp_path: Path) -> None:
    geo, dire = _write(tmp_path, geography=GEOGRAPHY.replace("owner: snnmt", "owner: sxd"))
    with pytest.raises(ConfigError, match="station dap-cau: unknown owner 'sxd'"):
        Directory.load(geo, dire)


def test_commune_in_unknown_province_is_reported(tmp_path: Path) -> None:
    geo, dire = _write(
        tmp_path,
        geography=GEOGRAPHY.replace("Kinh Bắc, province: bac-ninh", "Kinh Bắc, province: bn"),
    )
    with pytest.raises(ConfigError, match="commune bn-kinh-bac: province 'bn' is not defined"):
        Directory.load(geo, dire)


def test_unknown_field_names_file_and_field(tmp_path: Path) -> None:
    geo, dire = _write(tmp_path, directory=DIRECTORY.replace("leads:", "lead:"))
    with pytest.raises(ConfigError) as exc:
        Directory.load(geo, dire)
    assert f"{dire}: agencies.0.lead" in str(exc.value)


def test_unset_variable_in_directory_names_it(tmp_path: Path) -> None:
    geo, dire = _write(
        tmp_path,
        directory=DIRECTORY.replace(
            "${TEST_CANHBAO_BASE:-http://127.0.0.1:8787}", "${TEST_CANHBAO_NOPE}"
        ),
    )
    with pytest.raises(ConfigError, match="TEST_CANHBAO_NOPE"):
        Directory.load(geo, dire)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    geo, dire = _write(tmp_path)
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="cannot read"):
        Directory.load(missing, dire)
    with pytest.raises(ConfigError) as exc:
        Directory.load(geo, missing)
    assert str(missing) in str(exc.value)


def test_invalid_yaml_is_reported(tmp_path: Path) -> None:
    geo, dire = _write(tmp_path, geography="provinces: [\n")
    with pytest.raises(ConfigError) as exc:
        Directory.load(geo, dire)
    assert str(exc.value).startswith(f"{geo}: not valid YAML")


# --- The station registry the validate stage checks readings against (issue 15) ---------


def test_a_station_says_what_it_measures_and_for_which_communes(directory: Directory) -> None:
    assert directory.reading_problems("dap-cau", Domain.WATER, "water_level_m", None) == []
    assert directory.reading_problems("dap-cau", Domain.WATER, "water_level_m", "bn-kinh-bac") == []
    problems = dict(directory.reading_problems("dap-cau", Domain.ENERGY, "rain_mm", "x"))
    assert set(problems) == {"domain", "metric", "area"}
    [(field, why)] = directory.reading_problems("nowhere", Domain.WATER, "water_level_m", None)
    assert (field, why) == ("station_id", "unknown station 'nowhere' (not in the geography)")
    assert directory.unknown_communes(["bn-vu-ninh", "nowhere-commune"]) == ["nowhere-commune"]


def test_a_station_without_its_domain_and_metrics_is_a_config_error(tmp_path: Path) -> None:
    bare = GEOGRAPHY.replace(", domain: water, metrics: [water_level_m]", "")
    with pytest.raises(ConfigError, match=r"stations\.0\.domain: Field required"):
        Directory.load(*_write(tmp_path, geography=bare))


def test_every_scenario_reading_fits_the_shipped_station_registry(directory: Directory) -> None:
    """The drills and the demo feed only stations the geography knows, with their own
    domains and metrics: the validate stage would dead-letter anything else."""
    from datetime import UTC, datetime

    from feeds.scenarios import SCENARIOS
    from topics.models import Reading

    start = datetime(2026, 1, 5, tzinfo=UTC)
    for scenario in SCENARIOS.values():
        for m in scenario.events(start):
            if isinstance(m, Reading):
                problems = directory.reading_problems(m.station_id, m.domain, m.metric, m.area)
                assert problems == [], (scenario.name, m.station_id, problems)
            else:
                assert directory.unknown_communes(m.areas) == [], (scenario.name, m.areas)


def test_every_metric_a_station_reports_has_quality_limits(directory: Directory) -> None:
    from pipeline.rules.loader import load_rules

    quality = load_rules(Path(__file__).resolve().parents[2] / "rules").quality
    metrics = {m for s in directory.geography.stations for m in s.metrics}
    assert metrics <= set(quality.metrics), metrics - set(quality.metrics)


def test_a_misspelt_station_field_is_named_as_before(tmp_path: Path) -> None:
    # Stations are kept compact (alerting.directory.Station) but validated as before:
    # the same error, in the same words, for the same mistake.
    misspelt = GEOGRAPHY.replace("owner: snnmt", "ownr: snnmt")
    with pytest.raises(ConfigError) as exc:
        Directory.load(*_write(tmp_path, geography=misspelt))
    assert f"{tmp_path / 'geography.yaml'}: stations.0.ownr: Extra inputs are not permitted" in (
        str(exc.value)
    )


def test_a_large_geography_costs_little_memory_per_station(tmp_path: Path) -> None:
    """A worker keeps every station for its whole life (issue 12: at most 500 MB with
    100,000 stations): what one station costs once loaded, measured by tracemalloc."""
    import gc
    import json
    import tracemalloc

    import yaml

    geography = yaml.safe_load(GEOGRAPHY)
    template = geography["stations"][0]
    n = 5000
    geography["stations"] = [
        {**template, "id": f"st-{i:05d}", "name": f"st-{i:05d}"} for i in range(n)
    ]
    geo, dire = _write(tmp_path)
    geo.write_text(json.dumps(geography), encoding="utf-8")
    gc.collect()
    tracemalloc.start()
    try:
        directory = Directory.load(geo, dire)
        assert directory.station("st-04999") is not None  # its index built, as in use
        gc.collect()
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # About 270 bytes a station (its object, its id and name, its index entries); as a
    # pydantic model each station cost about 1,850.
    assert kept / n < 400, f"{kept / n:.0f} bytes a station"
