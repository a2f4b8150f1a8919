"""The shipped Prometheus alerts watch metrics canhbao really exports: an alert on a
misspelt metric or label would never fire, and nobody would know."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pipeline.worker.stages.control import RulesControl
from topics.metrics import Metrics
from topics.models import DeliveryOutcome

PROMETHEUS = Path(__file__).resolve().parent.parent / "infra" / "prometheus"
# Labels Prometheus itself puts on every scraped series (the scrape target's).
TARGET_LABELS = {"job", "instance"}


def exported() -> dict[str, tuple[str, ...]]:
    """Every series name canhbao exports, with its label names."""
    names: dict[str, tuple[str, ...]] = {}
    for value in vars(Metrics(CollectorRegistry())).values():
        if isinstance(value, Counter):
            names[value._name + "_total"] = tuple(value._labelnames)
        elif isinstance(value, Histogram):
            for suffix in ("_bucket", "_sum", "_count"):
                names[value._name + suffix] = tuple(value._labelnames)
        elif isinstance(value, Gauge):
            names[value._name] = tuple(value._labelnames)
    return names


def rules() -> list[dict[str, object]]:
    doc = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_prometheus_loads_the_alerts() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    assert len(rules()) >= 5


def test_every_alert_watches_an_exported_metric_and_its_labels() -> None:
    series = exported()
    for rule in rules():
        expr = str(rule["expr"])
        for name, selector in re.findall(r"(canhbao_\w+)(\{[^}]*\})?", expr):
            assert name in series, f"{rule['alert']}: canhbao exports no {name}"
            for label in re.findall(r"(\w+)\s*=", selector):
                assert label in series[name], f"{rule['alert']}: {name} has no label {label}"
        for label in re.findall(r"\$labels\.(\w+)", str(rule.get("annotations"))):
            if label in TARGET_LABELS:
                continue
            names = [n for n in re.findall(r"canhbao_\w+", expr)]
            assert any(label in series[n] for n in names), f"{rule['alert']}: no {label}"


def test_the_failed_delivery_alert_uses_the_outcome_canhbao_records() -> None:
    (rule,) = [r for r in rules() if r["alert"] == "CanhbaoDeliveriesFailing"]
    assert f'outcome="{DeliveryOutcome.FAILED.value}"' in str(rule["expr"])


def test_the_refused_rules_alert_fires_on_what_a_refused_rule_set_records() -> None:
    (rule,) = [r for r in rules() if r["alert"] == "CanhbaoRulesRefused"]
    found = re.search(r'outcome="(\w+)"', str(rule["expr"]))
    assert found is not None
    labels = {"outcome": found[1]}
    holder = SimpleNamespace(engine=SimpleNamespace(rules=SimpleNamespace(version="v1")))
    own = Metrics(CollectorRegistry())
    control = RulesControl(holder, own)  # type: ignore[arg-type]
    assert control.apply_doc(b"not a rule set") is False
    assert own.registry.get_sample_value("canhbao_rules_reloads_total", labels) == 1
