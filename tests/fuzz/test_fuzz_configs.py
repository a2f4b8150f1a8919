"""Fuzzed configuration files: rule files (``pipeline.rules.loader``), routes
(``alerting.routes``), the geography and the directory (``alerting.directory``), the
MQTT bridge and CAP ingest configs. Each file, changed a little, is loaded or refused
with the loader's own error, one line per problem, naming the file and the field."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

import alerting.directory
from alerting.directory import ConfigError, Directory
from alerting.routes import RoutingError, load_routing
from feeds.cap_alerts import ConfigError as CapConfigError
from feeds.cap_alerts import load_config as load_cap_config
from feeds.mqtt_bridge import ConfigError as BridgeConfigError
from feeds.mqtt_bridge import load_config as load_bridge_config
from pipeline.rules.loader import RuleError, compile_rules, read_sources
from tests.fuzz.conftest import FUZZ, mutated

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config"


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _dump(doc: Any) -> str:
    # libyaml's emitter: the pure-Python one took a third of each example's time.
    dumped: str = yaml.dump(doc, Dumper=yaml.CSafeDumper, allow_unicode=True, sort_keys=False)
    return dumped


# A problem line: "<where>: <field path>: <message>", or a cross-reference naming the
# entity at fault ("station dap-cau: unknown commune 'x'").
_NAMED = re.compile(r"^\S.*?: (?P<rest>.+)$", re.DOTALL)


def assert_problems_named(message: str, where: str) -> None:
    """Every line of a loader's error names the file (or rule file) and something in
    it; none is a bare exception text."""
    lines = [line for line in message.splitlines() if line.strip()]
    assert lines, "an empty error"
    assert where in lines[0], f"does not name the file: {lines[0]!r}"
    if re.search(r"line \d+, column \d+|position \d+", message):
        return  # not YAML: the parser's own lines say where (line and column)
    for line in lines:
        assert where in line, f"does not name the file: {line!r}"
        assert _NAMED.match(line.split(where, 1)[1].lstrip(":").strip() or "x: -"), line
        assert "Traceback" not in line


def _text_or_doc(valid: Any) -> st.SearchStrategy[str]:
    """The file's text: its YAML with mutations, or (sometimes) broken YAML."""
    docs = mutated(valid, max_mutations=3).map(_dump)
    broken = docs.flatmap(
        lambda text: st.integers(0, len(text)).map(lambda at: text[:at] + ": [\n" + text[at:])
    )
    return docs | broken | st.text(max_size=40)


# --- Rule files -------------------------------------------------------------------------------

# The rule set as a worker reads it (rule files and the baselines they name).
RULE_FILES = read_sources(REPO / "rules")
RULE_DOCS = {
    name: yaml.safe_load(text) for name, text in RULE_FILES.items() if name.endswith(".yaml")
}
RULE_TEXTS = {name: _text_or_doc(doc) for name, doc in RULE_DOCS.items()}


@FUZZ
@given(st.sampled_from(sorted(RULE_DOCS)).flatmap(lambda n: st.tuples(st.just(n), RULE_TEXTS[n])))
def test_rule_files_compile_or_name_each_problem(case: tuple[str, str]) -> None:
    name, text = case
    # The file with the baselines it may name: each shipped file compiles on its own,
    # and the whole set would parse six unchanged files for every example.
    sources = {n: t for n, t in RULE_FILES.items() if not n.endswith(".yaml")}
    sources[name] = text
    try:
        compile_rules(sources)
    except RuleError as exc:
        assert text != RULE_FILES[name], exc  # the shipped rules compile
        assert exc.problems
        for problem in exc.problems:
            assert problem.startswith(tuple(RULE_FILES)), problem
            assert ": " in problem, problem


# --- Routes, geography, directory, feed configs ----------------------------------------------

# The shipped files, read once: each example changes one and writes it over the last
# example's copy in one folder per test (a fresh folder per example made pytest scan an
# ever longer listing, and parsing the originals again each time was most of the cost).
NAMES = ["routes.yaml", "geography.yaml", "directory.yaml", "mqtt_bridge.yaml", "cap_ingest.yaml"]
TEXTS = {name: (CONFIG / name).read_text(encoding="utf-8") for name in NAMES}
FILES = {name: _text_or_doc(yaml.safe_load(text)) for name, text in TEXTS.items()}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("config")


@FUZZ
@given(FILES["routes.yaml"])
def test_routes_load_or_name_each_problem(workdir: Path, text: str) -> None:
    path = workdir / "routes.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_routing(path)
    except RoutingError as exc:
        assert_problems_named(str(exc), str(path))


class _ShippedParsedOnce:
    """``yaml`` as ``alerting.directory`` uses it, but the shipped text of the file an
    example leaves unchanged is parsed once (a copy of it is returned): a directory load
    reads both files, and parsing the unchanged 12 KB geography again at every example
    was most of the test's time. Every changed text is parsed by PyYAML as always."""

    YAMLError = yaml.YAMLError

    def __init__(self) -> None:
        self._parsed = {TEXTS[n]: yaml.safe_load(TEXTS[n]) for n in DIRECTORY_FILES}

    def safe_load(self, text: str) -> Any:
        if text in self._parsed:
            return copy.deepcopy(self._parsed[text])
        return yaml.safe_load(text)


DIRECTORY_FILES = ("geography.yaml", "directory.yaml")
SHIPPED = _ShippedParsedOnce()


def _load_directory(workdir: Path, name: str, text: str) -> None:
    geo, dirf = workdir / "geography.yaml", workdir / "directory.yaml"
    for path in (geo, dirf):
        path.write_text(text if path.name == name else TEXTS[path.name], encoding="utf-8")
    with mock.patch.object(alerting.directory, "yaml", SHIPPED):
        try:
            Directory.load(geo, dirf)
        except ConfigError as exc:
            assert_problems_named(str(exc), str(workdir))


@FUZZ
@given(FILES["geography.yaml"])
def test_geography_loads_or_names_each_problem(workdir: Path, text: str) -> None:
    _load_directory(workdir, "geography.yaml", text)


@FUZZ
@given(FILES["directory.yaml"])
def test_directory_loads_or_names_each_problem(workdir: Path, text: str) -> None:
    _load_directory(workdir, "directory.yaml", text)


def _load_feed_config(workdir: Path, name: str, text: str) -> None:
    path = workdir / name
    path.write_text(text, encoding="utf-8")
    loader, error = (
        (load_bridge_config, BridgeConfigError)
        if name == "mqtt_bridge.yaml"
        else (load_cap_config, CapConfigError)
    )
    try:
        loader(path)
    except error as exc:
        assert_problems_named(str(exc), str(path))


@FUZZ
@given(FILES["mqtt_bridge.yaml"])
def test_mqtt_bridge_config_loads_or_names_each_problem(workdir: Path, text: str) -> None:
    _load_feed_config(workdir, "mqtt_bridge.yaml", text)


@FUZZ
@given(FILES["cap_ingest.yaml"])
def test_cap_ingest_config_loads_or_names_each_problem(workdir: Path, text: str) -> None:
    _load_feed_config(workdir, "cap_ingest.yaml", text)


def test_the_rule_files_the_fuzzer_starts_from_compile_each_on_its_own() -> None:
    baselines = {n: t for n, t in RULE_FILES.items() if not n.endswith(".yaml")}
    for name in RULE_DOCS:
        compile_rules({**baselines, name: RULE_FILES[name]})
