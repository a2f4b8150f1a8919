"""What real CAP feeds send (issue 15.5): CAP 1.1, EDXL-DE wrappers, several languages,
categories that say nothing of the hazard; mapped by config/cap_ingest.yaml. What cannot
become a report that raises something is logged and counted, never dropped silently;
only live alerts become reports."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from alerting.directory import Directory
from canhbao.settings import Settings
from feeds.cap_alerts import (
    Areas,
    CapConfig,
    ConfigError,
    ReportRules,
    alerts_in,
    load_config,
    parse_alert,
    parse_xml,
)
from feeds.cap_ingest import CapIngest, Outcome
from feeds.sink import MemorySink
from pipeline.rules.loader import RuleSet
from pipeline.validate import TimePolicy, judge_report, validate_report
from topics.catalogue import DEADLETTER, INGEST_REPORTS
from topics.models import DeadLetter, Domain, Report, Severity

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "cap"
ICT = timezone(timedelta(hours=7))
NOW = datetime(2025, 11, 10, 9, 0, tzinfo=ICT)
CONFIG = load_config(REPO / "config" / "cap_ingest.yaml")


def reports(sink: MemorySink) -> list[Report]:
    return [Report.model_validate_json(v) for v in sink.on(INGEST_REPORTS)]


def dead(sink: MemorySink) -> list[DeadLetter]:
    return [DeadLetter.model_validate_json(v) for v in sink.on(DEADLETTER)]


def refused(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "canhbao_feed_refused_total", {"feed": "cap", "reason": reason}
    )
    return value or 0.0


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def areas(directory: Directory) -> Areas:
    return Areas.of(directory)


@pytest.fixture
def ingest(sink: MemorySink, areas: Areas, ruleset: RuleSet) -> CapIngest:
    return CapIngest(sink, areas, config=CONFIG, rules=ReportRules.of(ruleset), clock=lambda: NOW)


def sample(name: str, **replace: str) -> bytes:
    text = (DATA / name).read_text(encoding="utf-8")
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text.encode("utf-8")


def alert(
    *,
    categories: tuple[str, ...] = ("Met",),
    event: str = "Ngập lụt",
    severity: str = "Severe",
    sent: str = "2025-11-10T08:30:00+07:00",
    extra: str = "",
    ns: str = "urn:oasis:names:tc:emergency:cap:1.2",
) -> bytes:
    """A small CAP alert for Phường Vũ Ninh (sample geocode 99001)."""
    cats = "".join(f"<category>{c}</category>" for c in categories)
    return (
        f'<alert xmlns="{ns}"><identifier>T-{event}-{"-".join(categories)}</identifier>'
        f"<sender>test@agency.vn</sender><sent>{sent}</sent><status>Actual</status>"
        f"<msgType>Alert</msgType><scope>Public</scope><info><language>vi-VN</language>{cats}"
        f"<event>{event}</event><urgency>Immediate</urgency><severity>{severity}</severity>"
        f"<certainty>Observed</certainty>{extra}<headline>{event} tại Vũ Ninh</headline>"
        "<area><areaDesc>Phường Vũ Ninh</areaDesc><geocode><valueName>VN-commune</valueName>"
        "<value>99001</value></geocode></area></info></alert>"
    ).encode()


async def one(ingest: CapIngest, data: bytes) -> tuple[Outcome, str]:
    (result,) = await ingest.ingest(data, "x")
    return result


def without(rules: ReportRules, domain: Domain, category: str) -> ReportRules:
    """The rules in force, had nobody written the report rule for ``category``."""
    takes = {k: v for k, v in rules.takes.items() if k != (domain, category)}
    return ReportRules(f"{rules.version}-without-{category}", takes)


# --- What a real feed sends -------------------------------------------------------------


async def test_a_cap_1_1_alert_with_a_cap_prefix_and_three_languages_becomes_a_report(
    ingest: CapIngest, sink: MemorySink
) -> None:
    await ingest.ingest_file(DATA / "cap11_prefixed_flash_flood.xml")
    (report,) = reports(sink)
    assert (report.domain, report.category, report.severity) == (
        Domain.WATER,
        "flooding",
        Severity.SEVERE,
    )
    assert report.areas == ["bn-da-mai", "bn-luc-nam"]
    # Vietnamese text, though English comes first and Khmer follows.
    assert report.text.startswith("Nguy cơ lũ quét vùng đồi Lục Nam\nMưa 150-250 mm")
    assert not dead(sink)


async def test_without_vietnamese_the_english_text_is_used_not_the_first(
    ingest: CapIngest, sink: MemorySink
) -> None:
    text = (DATA / "cap11_prefixed_flash_flood.xml").read_text(encoding="utf-8")
    text = text.replace("<cap:language>vi-VN</cap:language>", "<cap:language>fr</cap:language>")
    head, _, rest = text.partition("<cap:info>")
    english, _, rest = rest.partition("</cap:info>")
    # French (the former Vietnamese) first, then Khmer, then English.
    moved = rest.replace("</cap:alert>", f"<cap:info>{english}</cap:info></cap:alert>")
    await ingest.ingest((head + moved).encode(), "x")
    (report,) = reports(sink)
    assert report.text.startswith("Flash flood risk in the Luc Nam hills")


async def test_an_edxl_de_1_0_distribution_is_unwrapped_into_its_alerts(
    ingest: CapIngest, sink: MemorySink
) -> None:
    """A dam release filed under CAP category Safety becomes a flooding report, and the
    national earthquake bulletin beside it an earthquake report (each alert its own)."""
    results = await ingest.ingest_file(DATA / "edxl_de_1_0_two_alerts.xml")
    assert [o for o, _ in results] == [Outcome.SENT, Outcome.SENT]
    flood, quake = reports(sink)
    assert (flood.domain, flood.category, flood.areas) == (Domain.WATER, "flooding", ["bn-luc-nam"])
    assert flood.reporter == "pctt@bacninh.gov.vn"
    assert (quake.domain, quake.category, quake.severity, quake.areas) == (
        Domain.GEOLOGY,
        "earthquake",
        Severity.MODERATE,
        ["bn-luc-nam"],
    )
    assert quake.reporter == "canhbao@igp-vast.vn"
    assert not dead(sink)


async def test_an_alert_of_an_edxl_de_that_no_rule_takes_is_dead_lettered_alone(
    sink: MemorySink, areas: Areas, ruleset: RuleSet, caplog: pytest.LogCaptureFixture
) -> None:
    """Where no rule takes earthquake reports, the earthquake is dead-lettered on its
    own, with its own XML (replayable with `canhbao feed cap FILE` once a rule takes
    it), and said so; the flooding report beside it is sent."""
    rules = without(ReportRules.of(ruleset), Domain.GEOLOGY, "earthquake")
    ingest = CapIngest(sink, areas, config=CONFIG, rules=rules, clock=lambda: NOW)
    no_rule = refused("no_rule")
    caplog.set_level("WARNING", logger="feeds.cap_ingest")
    results = await ingest.ingest_file(DATA / "edxl_de_1_0_two_alerts.xml")
    assert [o for o, _ in results] == [Outcome.SENT, Outcome.REJECTED]
    (report,) = reports(sink)
    assert report.category == "flooding"
    (letter,) = dead(sink)
    assert "no rule takes geology reports of category 'earthquake'" in letter.reason
    assert letter.source_topic.endswith("edxl_de_1_0_two_alerts.xml#2")
    (replayed,) = alerts_in(parse_xml(letter.original))
    assert parse_alert(replayed).identifier == "VN-IGP-2025-11-10-0003"
    assert refused("no_rule") == no_rule + 1
    assert "earthquake" in caplog.text and "edxl_de_1_0_two_alerts.xml#2" in caplog.text


async def test_an_edxl_de_2_0_envelope_around_an_alert_without_category_is_unwrapped(
    ingest: CapIngest, sink: MemorySink
) -> None:
    await ingest.ingest_file(DATA / "edxl_de_2_0_uncategorised_flood.xml")
    (report,) = reports(sink)
    assert (report.domain, report.category, report.areas) == (
        Domain.WATER,
        "flooding",
        ["bn-kinh-bac"],
    )
    assert not dead(sink)


async def test_an_edxl_de_without_an_alert_is_dead_lettered(
    ingest: CapIngest, sink: MemorySink
) -> None:
    data = sample(
        "edxl_de_2_0_uncategorised_flood.xml",
        **{"urn:oasis:names:tc:emergency:cap:1.2": "urn:example:incident"},
    )
    outcome, why = await one(ingest, data)
    assert outcome is Outcome.REJECTED
    assert "carries no CAP alert" in why
    assert dead(sink)[0].original == data


async def test_a_national_typhoon_warning_becomes_a_storm_report_the_rules_take(
    ingest: CapIngest, sink: MemorySink
) -> None:
    [(outcome, why)] = await ingest.ingest_file(DATA / "cap12_typhoon.xml")
    assert outcome is Outcome.SENT, why
    (report,) = reports(sink)
    assert (report.domain, report.category, report.severity) == (
        Domain.WATER,
        "storm",
        Severity.EXTREME,
    )
    assert report.areas == ["bn-vu-ninh", "bn-kinh-bac", "bn-hap-linh", "bn-bac-giang"]
    assert report.text.startswith("Bão số 3 gây gió mạnh cấp 8-9 tại Bắc Ninh")
    assert not dead(sink)


async def test_a_typhoon_warning_that_no_rule_takes_does_not_vanish(
    sink: MemorySink, areas: Areas, ruleset: RuleSet, caplog: pytest.LogCaptureFixture
) -> None:
    """A deployment whose rules take no storm reports: the warning is dead-lettered with
    what the rules do take, to replay once a rule takes it."""
    rules = without(ReportRules.of(ruleset), Domain.WATER, "storm")
    ingest = CapIngest(sink, areas, config=CONFIG, rules=rules, clock=lambda: NOW)
    no_rule = refused("no_rule")
    caplog.set_level("WARNING", logger="feeds.cap_ingest")
    [(outcome, why)] = await ingest.ingest_file(DATA / "cap12_typhoon.xml")
    assert outcome is Outcome.REJECTED
    assert "no rule takes water reports of category 'storm'" in why
    assert "flooding" in why  # what the rules do take, to help whoever reads it
    assert not reports(sink)
    (letter,) = dead(sink)
    assert letter.original == (DATA / "cap12_typhoon.xml").read_bytes()
    assert refused("no_rule") == no_rule + 1
    assert "cap12_typhoon.xml: rejected: no rule takes water reports" in caplog.text


@pytest.mark.parametrize("categories", [("Safety",), ("Rescue",), ("Other",), ()])
async def test_categories_that_say_nothing_of_the_hazard_are_placed_by_the_event(
    ingest: CapIngest, sink: MemorySink, categories: tuple[str, ...]
) -> None:
    outcome, _ = await one(ingest, alert(categories=categories, event="Ngập lụt"))
    assert outcome is Outcome.SENT
    (report,) = reports(sink)
    assert (report.domain, report.category) == (Domain.WATER, "flooding")


@pytest.mark.parametrize(
    ("categories", "event", "domain", "category"),
    [
        (("Geo",), "Động đất", "geology", "earthquake"),
        (("Other",), "Earthquake", "geology", "earthquake"),  # the event places it
        (("Geo",), "Sóng thần", "geology", "earthquake"),
        (("Met",), "Bão số 5", "water", "storm"),
        (("Met",), "Áp thấp nhiệt đới", "water", "storm"),
        ((), "Tropical storm", "water", "storm"),
    ],
)
async def test_national_typhoon_and_earthquake_warnings_reach_the_rules(
    ingest: CapIngest,
    sink: MemorySink,
    categories: tuple[str, ...],
    event: str,
    domain: str,
    category: str,
) -> None:
    outcome, why = await one(ingest, alert(categories=categories, event=event))
    assert outcome is Outcome.SENT, why
    (report,) = reports(sink)
    assert (report.domain.value, report.category) == (domain, category)


@pytest.mark.parametrize(
    ("categories", "event", "domain", "category"),
    [
        (("Geo",), "Đất bão hòa nước", "geology", "đất_bão_hòa_nước"),  # not a storm
        (("Met",), "Rét hại", "water", "rét_hại"),  # a cold spell: no rule takes it
        (("Rescue",), "Tìm kiếm cứu nạn", "water", "tìm_kiếm_cứu_nạn"),  # otherwise: water
    ],
)
async def test_what_no_rule_takes_is_dead_lettered_with_its_domain_and_category(
    ingest: CapIngest,
    sink: MemorySink,
    categories: tuple[str, ...],
    event: str,
    domain: str,
    category: str,
) -> None:
    outcome, why = await one(ingest, alert(categories=categories, event=event))
    assert outcome is Outcome.REJECTED
    assert f"no rule takes {domain} reports of category {category!r}" in why
    assert not reports(sink)


async def test_the_mapping_is_configuration(
    sink: MemorySink, areas: Areas, ruleset: RuleSet
) -> None:
    """Another province files dike incidents under Rescue and has nothing to place
    uncategorised alerts: its config says so, and the adapter follows it."""
    config = CapConfig.model_validate(
        {
            "categories": {"Rescue": "water", "Transport": "ignore"},
            "events": [{"match": "sạt lở đê", "domain": "water", "category": "dike_breach"}],
            "otherwise": None,
        }
    )
    ingest = CapIngest(sink, areas, config=config, rules=ReportRules.of(ruleset), clock=lambda: NOW)
    assert (await one(ingest, alert(categories=("Rescue",), event="Sạt lở đê")))[0] is (
        Outcome.SENT
    )
    (report,) = reports(sink)
    assert report.category == "dike_breach"
    outcome, why = await one(ingest, alert(categories=(), event="Sự cố"))
    assert outcome is Outcome.REJECTED
    assert "no canhbao domain for the CAP categories none" in why
    outcome, why = await one(ingest, alert(categories=("Transport",), event="Cấm đường"))
    assert outcome is Outcome.SKIPPED
    assert "ignored" in why


async def test_an_ignored_event_is_logged_and_counted(
    ingest: CapIngest, sink: MemorySink, caplog: pytest.LogCaptureFixture
) -> None:
    """A neighbouring canhbao publishes its own equipment notices as CAP (category Other)."""
    ignored = refused("ignored")
    caplog.set_level("INFO", logger="feeds.cap_ingest")
    outcome, why = await one(ingest, alert(categories=("Other",), event="Lỗi cảm biến"))
    assert outcome is Outcome.SKIPPED
    assert "an equipment notice of another network" in why
    assert refused("ignored") == ignored + 1
    assert "skipped: ignored: event 'Lỗi cảm biến'" in caplog.text
    assert not sink.sent


async def test_a_report_below_what_the_rules_take_is_skipped_and_said_so(
    ingest: CapIngest, sink: MemorySink, caplog: pytest.LogCaptureFixture
) -> None:
    below = refused("below_min_severity")
    caplog.set_level("INFO", logger="feeds.cap_ingest")
    outcome, why = await one(ingest, alert(event="Ngập lụt", severity="Minor"))
    assert outcome is Outcome.SKIPPED
    assert "severity Minor is below Moderate" in why
    assert refused("below_min_severity") == below + 1
    assert "severity Minor is below Moderate" in caplog.text
    assert not sink.sent


async def test_the_severity_of_the_info_for_our_communes_counts(
    ingest: CapIngest, sink: MemorySink
) -> None:
    """One alert, two <info>: Extreme far away, Moderate here. Ours is Moderate."""
    data = alert(event="Ngập lụt", severity="Moderate").decode()
    far = (
        "<info><language>vi-VN</language><category>Met</category><event>Ngập lụt</event>"
        "<urgency>Immediate</urgency><severity>Extreme</severity><certainty>Observed</certainty>"
        "<area><areaDesc>xa</areaDesc><geocode><valueName>VN-commune</valueName>"
        "<value>26881</value></geocode></area></info>"
    )
    await one(ingest, data.replace("</alert>", far + "</alert>").encode())
    (report,) = reports(sink)
    assert report.severity is Severity.MODERATE


# --- Only live alerts become live reports ------------------------------------------------


async def test_an_alert_sent_long_ago_is_history_not_notified(
    ingest: CapIngest, sink: MemorySink, caplog: pytest.LogCaptureFixture
) -> None:
    historical = refused("historical")
    caplog.set_level("INFO", logger="feeds.cap_ingest")
    outcome, why = await one(ingest, alert(sent="2025-11-08T08:30:00+07:00"))
    assert outcome is Outcome.SKIPPED
    assert why == (
        "sent 2025-11-08T08:30:00+07:00, 2 days ago: beyond the live lateness bound of 6 h "
        "it is history, not notified (an alert's time is the latest of its sent, effective "
        "and onset)"
    )
    assert refused("historical") == historical + 1
    assert "history, not notified" in caplog.text
    assert not sink.sent


async def test_an_alert_sent_earlier_that_takes_effect_now_is_live(
    ingest: CapIngest, sink: MemorySink
) -> None:
    data = alert(
        sent="2025-11-09T20:00:00+07:00", extra="<effective>2025-11-10T08:00:00+07:00</effective>"
    )
    assert (await one(ingest, data))[0] is Outcome.SENT


IN_FORCE = [
    # (sent, effective, onset, the report's time): each alert is in force now
    ("2025-11-10T01:00:00+07:00", "2025-11-10T08:00:00+07:00", None, "2025-11-10T08:00:00+07:00"),
    ("2025-11-10T01:00:00+07:00", None, "2025-11-10T08:30:00+07:00", "2025-11-10T08:30:00+07:00"),
    # takes effect in two hours (a typhoon's landfall): not history, dated now
    ("2025-11-10T01:00:00+07:00", "2025-11-10T11:00:00+07:00", None, "2025-11-10T09:00:00+07:00"),
]


@pytest.mark.parametrize(("sent", "effective", "onset", "dated"), IN_FORCE)
async def test_an_alert_sent_long_ago_but_in_force_now_reaches_the_rules(
    ingest: CapIngest, sink: MemorySink, sent: str, effective: str | None, onset: str | None,
    dated: str,
) -> None:  # fmt: skip
    """Sent 8 h ago, in force from an hour ago (or its event begins now, or later today):
    live for CAP ingest and for the validate stage alike. It was dated by <sent> before,
    so the validate stage refused as history what CAP ingest had sent as live."""
    extra = "".join(
        f"<{tag}>{value}</{tag}>" for tag, value in (("effective", effective), ("onset", onset))
        if value
    ) + "<expires>2025-11-11T08:00:00+07:00</expires>"  # fmt: skip
    outcome, why = await one(ingest, alert(sent=sent, extra=extra))
    assert outcome is Outcome.SENT, why
    (raw,) = sink.on(INGEST_REPORTS)
    judged = validate_report(raw, source_topic=INGEST_REPORTS, now=NOW, policy=TimePolicy())
    assert isinstance(judged, Report), judged.reason
    assert judged.observed_at == datetime.fromisoformat(dated)


async def test_an_alert_long_past_is_history_for_cap_ingest_as_for_the_validate_stage(
    ingest: CapIngest, sink: MemorySink
) -> None:
    """Sent 8 h ago and in force since 7 h ago: the latest of its times is past the live
    lateness bound. CAP ingest does not send it; a report dated so would be refused."""
    historical = refused("historical")
    extra = "<effective>2025-11-10T02:00:00+07:00</effective>"
    outcome, why = await one(ingest, alert(sent="2025-11-10T01:00:00+07:00", extra=extra))
    assert outcome is Outcome.SKIPPED
    assert why.startswith("effective 2025-11-10T02:00:00+07:00, 7 h ago:")
    assert refused("historical") == historical + 1
    assert not sink.sent
    report = Report(
        report_id="r", domain=Domain.WATER, category="flooding", severity=Severity.SEVERE,
        areas=["bn-vu-ninh"], reporter="x", observed_at=datetime.fromisoformat(
            "2025-11-10T02:00:00+07:00"),
    )  # fmt: skip
    refusal = judge_report(report, now=NOW, policy=TimePolicy())
    assert refusal is not None and refusal.code.value == "historical"


async def test_an_expired_alert_is_refused_with_its_expiry(
    ingest: CapIngest, sink: MemorySink
) -> None:
    expired = refused("expired")
    outcome, why = await one(ingest, alert(extra="<expires>2025-11-10T08:59:00+07:00</expires>"))
    assert (outcome, why) == (Outcome.SKIPPED, "refused: expired at 2025-11-10T08:59:00+07:00")
    assert refused("expired") == expired + 1
    assert not sink.sent


@pytest.mark.parametrize(
    ("sent", "reason", "why"),
    [
        ("2999-01-01T00:00:00+07:00", "future", "ahead of the pipeline's clock"),
        ("2025-11-10T09:06:00+07:00", "future", "6 min ahead of the pipeline's clock"),
        ("1970-01-01T00:00:00+00:00", "implausible", "not a plausible time"),
    ],
)
async def test_an_alert_sent_at_a_wrong_time_is_dead_lettered(
    ingest: CapIngest, sink: MemorySink, sent: str, reason: str, why: str
) -> None:
    before = refused(reason)
    outcome, said = await one(ingest, alert(sent=sent))
    assert outcome is Outcome.REJECTED
    assert why in said and why in dead(sink)[0].reason
    assert refused(reason) == before + 1
    assert not reports(sink)


async def test_a_sent_time_within_the_clock_skew_is_taken_as_it_is(
    ingest: CapIngest, sink: MemorySink
) -> None:
    assert (await one(ingest, alert(sent="2025-11-10T09:04:00+07:00")))[0] is Outcome.SENT
    (report,) = reports(sink)
    assert report.observed_at == datetime(2025, 11, 10, 9, 4, tzinfo=ICT)


async def test_the_bounds_are_the_pipelines_settings(
    monkeypatch: pytest.MonkeyPatch, sink: MemorySink, areas: Areas, ruleset: RuleSet
) -> None:
    """CANHBAO_MAX_LATENESS and CANHBAO_MAX_CLOCK_SKEW move CAP's bounds with everyone's."""
    monkeypatch.setenv("CANHBAO_MAX_LATENESS", str(3 * 86400))
    monkeypatch.setenv("CANHBAO_MAX_CLOCK_SKEW", "30")
    policy = Settings().time_policy()
    ingest = CapIngest(
        sink, areas, config=CONFIG, rules=ReportRules.of(ruleset), policy=policy, clock=lambda: NOW
    )
    assert (await one(ingest, alert(sent="2025-11-08T08:30:00+07:00")))[0] is Outcome.SENT
    outcome, why = await one(ingest, alert(sent="2025-11-10T09:01:00+07:00", event="Vỡ đê"))
    assert (outcome, "1 min ahead" in why) == (Outcome.REJECTED, True)


# --- The config file ---------------------------------------------------------------------


def test_the_shipped_config_maps_every_cap_category_or_says_what_does() -> None:
    assert CONFIG.otherwise == Domain.WATER
    # Safety, Rescue and Other are placed by the event, then by `otherwise`.
    assert {"Safety", "Rescue", "Other"}.isdisjoint(CONFIG.categories)
    assert CONFIG.categories["Transport"] == "ignore"
    assert Settings().cap_ingest_config == REPO / "config" / "cap_ingest.yaml"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"categories": {"Weather": "water"}}, "categories.Weather"),
        ({"categories": {"Met": "rain"}}, "categories.Met"),
        ({"events": [{"match": "(bão", "domain": "water", "category": "storm"}]}, "events.0.match"),
        ({"events": [{"match": "bão", "domain": "water"}]}, "either category"),
        ({"live": {"max_age": "6h"}}, "live: no longer read.*CANHBAO_MAX_LATENESS"),
        ({"otherwise": "rescue"}, "otherwise"),
    ],
)
def test_a_wrong_config_is_refused_naming_the_field(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    import yaml

    path = tmp_path / "cap_ingest.yaml"
    path.write_text(yaml.safe_dump(change), encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_the_config_path_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CANHBAO_CAP_INGEST_CONFIG", str(tmp_path / "mine.yaml"))
    assert Settings().cap_ingest_config == tmp_path / "mine.yaml"


def test_a_cap_prefixed_document_parses_as_its_version() -> None:
    (el,) = alerts_in(parse_xml((DATA / "cap11_prefixed_flash_flood.xml").read_bytes()))
    parsed = parse_alert(el)
    assert (parsed.version, parsed.identifier) == ("1.1", "VN-NCHMF-2025-11-10-0107")
    assert [i.language for i in parsed.infos] == ["en-US", "vi-VN", "km-KH"]
    assert ET.tostring(el)  # the element re-serialises (dead letters keep it)
