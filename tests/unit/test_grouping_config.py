"""Aggregation options on routes (alerting.routes): inheritance, defaults, and the errors
an engineer gets for a wrong routes file."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from alerting.routes import Grouping, RoutingError, load_routing, receivers_with_grouping
from pipeline.lifecycle import Context
from pipeline.rules.model import Rule
from tests.helpers import step

REPO = Path(__file__).resolve().parents[2]
RECEIVERS = """
receivers:
  - {name: lead, to: {lead_agency: true}, channels: [webhook, email]}
  - {name: committees, to: {commune_committees: true}, channels: [webhook]}
"""


SHORT_REPEAT = """  receivers: [lead]
  repeat_interval: 5m
  routes: [{matchers: ['level>=1'], group_interval: 10m}]"""
FIRST_WINS = """  receivers: [lead]
  routes:
    - matchers: ['domain="water"']
      group_by: [hazard]
      group_wait: 1m
      receivers: [lead]
      continue: true
    - matchers: ['level>=1']
      receivers: [lead, committees]"""


def routes(tmp_path: Path, route: str, extra: str = "") -> Path:
    f = tmp_path / "routes.yaml"
    f.write_text(f"route:\n{route}\n{RECEIVERS}{extra}", encoding="utf-8")
    return f


def tree(tmp_path: Path, route: str, extra: str = "") -> list[Grouping | None]:
    """The grouping of every route, depth first."""
    out: list[Grouping | None] = []

    def walk(r) -> None:  # type: ignore[no-untyped-def]
        out.append(r.grouping)
        for child in r.routes:
            walk(child)

    walk(load_routing(routes(tmp_path, route, extra)).route)
    return out


def test_no_grouping_anywhere_means_todays_behaviour(tmp_path: Path) -> None:
    assert tree(tmp_path, "  receivers: [lead]\n  routes: [{matchers: ['level>=1']}]") == [
        None,
        None,
    ]


def test_children_inherit_and_override(tmp_path: Path) -> None:
    root, health, severe, other = tree(
        tmp_path,
        """  receivers: [lead]
  repeat_interval: 4h
  routes:
    - matchers: ['domain="health"']
      group_by: [domain, hazard]
      group_wait: 2m
      group_interval: 10m
      routes:
        - matchers: ['level>=2']
          group_wait: 0s
          urgent: []
    - matchers: ['domain="water"']""",
    )
    assert root == Grouping(repeat=timedelta(hours=4))
    assert root is not None and root.immediate  # each warning alone, nothing to wait for
    assert health == Grouping(("domain", "hazard"), timedelta(minutes=2), timedelta(minutes=10),
                              timedelta(hours=4))  # fmt: skip
    assert severe == Grouping(("domain", "hazard"), timedelta(0), timedelta(minutes=10),
                              timedelta(hours=4), urgent=())  # fmt: skip
    assert other == root


def test_each_warning_alone_is_spelled_with_dots(tmp_path: Path) -> None:
    (root,) = tree(tmp_path, "  receivers: [lead]\n  group_by: ['...']\n  group_wait: 30s")
    assert root is not None and root.by is None and not root.immediate


def test_zero_is_a_duration_for_waits(tmp_path: Path) -> None:
    for zero in ("0", "0s", "0m", 0):
        (root,) = tree(tmp_path, f"  receivers: [lead]\n  group_wait: {zero}")
        assert root is not None and root.wait == timedelta(0)


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ("group_by: ['...', domain]", r"route\.group_by: .*'\.\.\.' makes each warning its own"),
        ("group_by: [Domain]", r"'Domain' is not a label name"),
        ("group_by: [domain, domain]", r"a label is named twice"),
        ("group_wait: -5m", r"route\.group_wait: .*positive"),
        ("group_wait: 2h", r"group_wait 2h holds warnings back too long \(at most 1h\)"),
        ("group_interval: 2d", r"group_interval 2d is too long"),
        ("group_interval: soon", r"'soon' is not a duration"),
        ("repeat_interval: 0s", r"route\.repeat_interval: .*positive"),
        ("urgent: ['severity=>Severe']", r"route\.urgent: .*not a matcher"),
        ("group_by: domain", r"route\.group_by: .*valid list"),
    ],
)
def test_bad_grouping_options_are_refused_clearly(tmp_path: Path, route: str,
                                                  message: str) -> None:  # fmt: skip
    with pytest.raises(RoutingError, match=message) as exc:
        load_routing(routes(tmp_path, f"  receivers: [lead]\n  {route}"))
    assert str(tmp_path) in str(exc.value)


def test_a_repeat_shorter_than_the_interval_names_the_route(tmp_path: Path) -> None:
    with pytest.raises(RoutingError, match=r"route\.routes\.0: repeat_interval 5m is shorter "
                                           r"than group_interval 10m"):  # fmt: skip
        load_routing(routes(tmp_path, SHORT_REPEAT))


def test_default_repeat_interval_is_the_roots(tmp_path: Path) -> None:
    (root,) = tree(tmp_path, "  receivers: [lead]", "default_repeat_interval: 6h\n")
    assert root == Grouping(repeat=timedelta(hours=6))


def test_a_receiver_takes_the_grouping_of_the_first_route_that_names_it(
    tmp_path: Path, dap_cau: Rule, ctx: Context, make_reading
) -> None:
    config = load_routing(routes(tmp_path, FIRST_WINS))
    w = step(dap_cau, None, make_reading(4.35), ctx)
    assert w is not None
    found = {r.name: grouping for r, grouping in receivers_with_grouping(config, w)}
    assert found["lead"] is not None and found["lead"].by == ("hazard",)
    assert found["committees"] is None


def test_the_shipped_routes_group_health_and_cyber_and_remind_everyone() -> None:
    config = load_routing(REPO / "config/routes.yaml")
    assert config.route.grouping == Grouping(repeat=timedelta(hours=4))
    health = next(r for r in config.route.routes if r.group_by)
    assert health.matchers == ['domain=~"health|cyber"']
    assert health.grouping is not None
    assert health.grouping.by == ("domain", "hazard")
    assert health.grouping.wait == timedelta(minutes=2)
    assert health.grouping.urgent == ('severity>="Severe"',)
