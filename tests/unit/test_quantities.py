"""alerting.quantities: what an evidence value is, and how each language writes it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from alerting import quantities as q
from topics.models import Evidence, Severity

AT = datetime(2025, 10, 7, 2, 0, tzinfo=UTC)


def ev(metric: str, value: float, note: str = "", threshold: float | None = None) -> Evidence:
    return Evidence(station_id="s", metric=metric, value=value, observed_at=AT, note=note,
                    threshold=threshold)  # fmt: skip


@pytest.mark.parametrize(
    ("evidence", "vi", "en", "km"),
    [
        (ev("water_level_m", 4.3), "4,30 m", "4.30 m", "4,30 m"),
        (ev("vn_aqi", 151), "151", "151", "151"),
        (ev("failed_login:count_300s", 3), "3 lần", "3 attempts", "3 ដង"),
        (ev("ids_alert_high:count_600s", 1), "1 cảnh báo", "1 alert", "1 ការជូនដំណឹង"),
        (
            ev("http_requests:rate_60s", 2916.67),
            "2.917 yêu cầu/giây",
            "2,917 requests/s",
            "2.917 សំណើ/វិនាទី",
        ),
        (
            ev("water_level_m", 108, "silent since 2025-10-07T00:12:00+07:00 (limit 0:30:00)"),
            "1 giờ 48 phút",
            "1 h 48 min",
            "1 ម៉ោង 48 នាទី",
        ),
        (ev("water_level_m", 30.0167, "silent since x"), "30 phút", "30 min", "30 នាទី"),
        (ev("rain_mm:sum_86400s", 72.5), "72,5 mm", "72.5 mm", "72,5 mm"),
        (ev("rain_mm:sum_259200s", 150.4), "150 mm", "150 mm", "150 mm"),
        (ev("pm25_ugm3:mean_86400s", 50), "50 µg/m³", "50 µg/m³", "50 µg/m³"),
        (ev("soil_moisture_pct", 41), "41%", "41%", "41%"),
        (ev("fuel_reserve_days", 1), "1 ngày", "1 day", "1 ថ្ងៃ"),
        (ev("water_level_m:rate_per_h", 0.35), "0,35 m/giờ", "0.35 m/h", "0,35 m/ម៉ោង"),
        (ev("dengue_cases_weekly:z", 2.3845), "2,4", "2.4", "2,4"),
        (ev("ili_visits_daily:ears_c2", 14.23), "14,2", "14.2", "14,2"),
        (ev("dengue_cases_weekly", 25), "25 ca", "25 cases", "25 ករណី"),
        (ev("some_new_metric", 3.0), "3", "3", "3"),
    ],
)
def test_each_value_is_written_with_its_unit_or_none(
    evidence: Evidence, vi: str, en: str, km: str
) -> None:
    assert (q.written(evidence, "vi"), q.written(evidence, "en"), q.written(evidence, "km")) == (
        vi,
        en,
        km,
    )


def test_a_report_is_its_severity_not_a_number() -> None:
    report = ev("report:intrusion", 3.0, "report c-3: IDS: ET EXPLOIT")
    assert q.describe(report).kind is q.Kind.REPORT and q.describe(report).detail == "intrusion"
    assert q.severity(report).value == "Severe"
    assert not q.measured(report)
    # The rank the engine records is the one read back here.
    assert all(q.severity(ev("report:x", float(s.rank))) is s for s in Severity)


def test_spoken_values_have_units_in_words_and_no_idle_decimals() -> None:
    assert q.spoken(ev("water_level_m", 4.0), "vi") == "4 mét"
    assert q.spoken(ev("water_level_m", 6.42), "en") == "6.42 metres"
    assert q.spoken(ev("water_level_m", 61, "silent since x"), "en") == "1 hour and 1 minute"
    assert q.spoken(ev("pm25_ugm3:mean_86400s", 75), "km") == "75 មីក្រូក្រាមក្នុងមួយម៉ែត្រគូប"


def test_reached_means_the_margin_shows_as_zero() -> None:
    assert q.reached(ev("failed_login:count_300s", 20, threshold=20))
    assert q.reached(ev("water_level_m", 5.301, threshold=5.30))
    assert not q.reached(ev("water_level_m", 5.31, threshold=5.30))
    assert not q.reached(ev("vn_aqi", 175))


def test_the_last_reading_of_a_computed_value_keeps_the_metrics_unit() -> None:
    assert q.last_reading(ev("rain_mm:sum_86400s", 50, "last reading 12.5"), "vi") == "12,5 mm"
    assert q.last_reading(ev("vn_aqi", 50, "other note"), "vi") == ""
