"""infra/prometheus and infra/grafana: Prometheus' own checker accepts them, every
canhbao service is scraped, and every dashboard query names a metric (and labels)
canhbao really exports: a panel on a misspelt metric stays empty and nobody notices."""

from __future__ import annotations

import json
import re
import subprocess

import yaml

from tests.servers import require
from tests.test_prometheus_alerts import PROMETHEUS, TARGET_LABELS, exported

GRAFANA = PROMETHEUS.parent / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
# PromQL's own words (functions, aggregations, modifiers), not series names.
PROMQL = {"sum", "max", "min", "avg", "count", "rate", "increase", "histogram_quantile",
          "by", "without", "and", "or", "unless", "time", "on", "ignoring"}  # fmt: skip
# The one series Prometheus makes itself for every target: whether the scrape worked.
PROMETHEUS_SERIES = {"up"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require("promtool"), *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60
    )


def test_promtool_accepts_the_configuration_the_alerts_and_their_tests() -> None:
    for args in (
        ("check", "config", "prometheus.yml"),
        ("check", "rules", "alerts.yml"),
        # The alerts fire on the series canhbao exports (alerts.test.yml).
        ("test", "rules", "alerts.test.yml"),
    ):
        run = promtool(*args)
        assert run.returncode == 0, f"promtool {' '.join(args)}:\n{run.stdout}{run.stderr}"


def test_every_canhbao_service_is_scraped() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs >= {"canhbao-worker", "canhbao-dispatch", "canhbao-record", "canhbao-console",
                    "canhbao-feeds"}  # fmt: skip


def queries(dashboard: dict[str, object]) -> list[tuple[str, str]]:
    found = []
    for panel in dashboard["panels"]:  # type: ignore[attr-defined]
        for target in panel.get("targets", []):
            found.append((panel["title"], target["expr"]))
    return found


def series_and_labels(expr: str) -> tuple[list[str], set[str], set[str]]:
    """The series an expression names, the labels it selects or groups by, and any
    other word left once PromQL's own are set aside (which must be none)."""
    strings = re.sub(r'"[^"]*"', '""', expr)
    labels = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", strings))
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", strings):
        labels |= {x.strip() for x in group.split(",") if x.strip()}
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", strings)
    words = set(re.findall(r"[A-Za-z_:][\w:]*", bare)) - PROMQL
    names = [w for w in words if w.startswith("canhbao_") or w in PROMETHEUS_SERIES]
    return names, labels, words - set(names)


def test_the_dashboards_exist_and_use_the_provisioned_datasource() -> None:
    assert DASHBOARDS, "no dashboard in infra/grafana/dashboards"
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    uids = {d["uid"] for d in sources["datasources"]}
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/canhbao.yml").read_text())
    assert provider["providers"][0]["type"] == "file"
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] in uids, f"{path.name}: {panel['title']}"


def test_every_dashboard_query_names_metrics_and_labels_canhbao_exports() -> None:
    exports = exported()
    shown: set[str] = set()
    for path in DASHBOARDS:
        for title, expr in queries(json.loads(path.read_text())):
            names, labels, unknown = series_and_labels(expr)
            where = f"{path.name}: {title}: {expr}"
            assert names, f"{where}: names no metric"
            assert not unknown, f"{where}: {sorted(unknown)} is no metric canhbao exports"
            for name in names:
                assert name in exports or name in PROMETHEUS_SERIES, f"{where}: no {name}"
            own = [n for n in names if n in exports]
            for label in labels - TARGET_LABELS:
                ok = any(label in exports[n] or (label == "le" and n.endswith("_bucket"))
                         for n in own)  # fmt: skip
                assert ok, f"{where}: no label {label} on {own}"
            shown.update(n.removesuffix("_bucket") for n in own)
    # The two the issue asks for, at least.
    assert "canhbao_end_to_end_latency_seconds" in shown
    assert "canhbao_consumer_lag_records" in shown


def test_the_dashboard_check_catches_a_misspelt_metric() -> None:
    names, _, unknown = series_and_labels("sum by (domain) (rate(canhbao_readngs_total[5m]))")
    assert names == ["canhbao_readngs_total"] and "canhbao_readngs_total" not in exported()
    _, _, unknown = series_and_labels("rate(http_requests_total[5m])")
    assert unknown == {"http_requests_total"}
