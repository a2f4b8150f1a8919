"""Fuzzed configuration files: rule files (``pipeline.rules.loader``), routes
(``alerting.routes``), the geography and the directory (``alerting.directory``), the
MQTT bridge and CAP ingest configs. Each file, changed a little, is loaded or refused
with the loader's own error, one line per problem, naming the file and the field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

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
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


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


@FUZZ
@given(
    st.sampled_from(sorted(RULE_DOCS)).flatmap(
        lambda n: st.tuples(st.just(n), _text_or_doc(RULE_DOCS[n]))
    )
)
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


@FUZZ
@given(_text_or_doc(_yaml(CONFIG / "routes.yaml")))
def test_routes_load_or_name_each_problem(tmp_path_factory: Any, text: str) -> None:
    path = tmp_path_factory.mktemp("routes") / "routes.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_routing(path)
    except RoutingError as exc:
        assert_problems_named(str(exc), str(path))


@FUZZ
@given(st.booleans(), st.data())
def test_geography_and_directory_load_or_name_each_problem(
    tmp_path_factory: Any, geography: bool, data: st.DataObject
) -> None:
    where = tmp_path_factory.mktemp("dir")
    geo, dirf = where / "geography.yaml", where / "directory.yaml"
    geo.write_text((CONFIG / "geography.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    dirf.write_text((CONFIG / "directory.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    target = geo if geography else dirf
    target.write_text(data.draw(_text_or_doc(_yaml(target))), encoding="utf-8")
    try:
        Directory.load(geo, dirf)
    except ConfigError as exc:
        assert_problems_named(str(exc), str(where))


@FUZZ
@given(st.booleans(), st.data())
def test_feed_configs_load_or_name_each_problem(
    tmp_path_factory: Any, bridge: bool, data: st.DataObject
) -> None:
    name = "mqtt_bridge.yaml" if bridge else "cap_ingest.yaml"
    path = tmp_path_factory.mktemp("feed") / name
    path.write_text(data.draw(_text_or_doc(_yaml(CONFIG / name))), encoding="utf-8")
    loader, error = (
        (load_bridge_config, BridgeConfigError) if bridge else (load_cap_config, CapConfigError)
    )
    try:
        loader(path)
    except error as exc:
        assert_problems_named(str(exc), str(path))


def test_the_rule_files_the_fuzzer_starts_from_compile_each_on_its_own() -> None:
    baselines = {n: t for n, t in RULE_FILES.items() if not n.endswith(".yaml")}
    for name in RULE_DOCS:
        compile_rules({**baselines, name: RULE_FILES[name]})
