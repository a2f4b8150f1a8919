"""``cyber``: a brute-force, then a DDoS attack on the provincial portal.

One hour. The provincial data centre's IDS (Suricata) sees a scan from one address,
the same address then tries passwords on the portal (one failed login every 2 s
for 4 minutes), the police's cyber unit reports the intrusion attempt, and half an
hour later a botnet floods the portal's front end at 15 000 requests a second for
two minutes until scrubbing takes over. Addresses are from the documentation
ranges (RFC 5737).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta

from feeds.scenarios.base import Event, Scenario, minutes, reading, report
from topics.models import Domain, Severity

PORTAL = "portal-bac-ninh"
IDS = "soc-bac-ninh"
ATTACKER = "203.0.113.7"
USERS = ("198.51.100.23", "198.51.100.41", "192.0.2.15", "192.0.2.88")
DURATION = timedelta(hours=1)
DDOS_AT = timedelta(minutes=35)

# Requests per 10-s sample during the flood (the portal normally serves ~500 req/s).
DDOS_SAMPLES = [20_000, 60_000, 120_000, *[150_000] * 12, 80_000, 20_000]


def attack(
    start: datetime,
    rng: random.Random,
    *,
    scenario: str = "cyber",
    ddos_at: timedelta = DDOS_AT,
    traffic: tuple[timedelta, timedelta] = (timedelta(0), DURATION),
    reported: bool = True,
) -> Iterator[Event]:
    """The attack from ``start``; the portal's request counter runs in ``traffic``
    (from, to), the police report the intrusion attempt when ``reported``."""
    # Normal traffic: request counts every 10 s, and now and then a user mistyping.
    flood_from = int(ddos_at.total_seconds() // 10)
    first, last = (int(t.total_seconds() // 10) for t in traffic)
    for n in range(first, last + 1):
        k = n - flood_from
        count = DDOS_SAMPLES[k] if 0 <= k < len(DDOS_SAMPLES) else round(rng.gauss(5000, 350))
        at = start + timedelta(seconds=10 * n)
        yield reading(PORTAL, Domain.CYBER, "http_requests", count, at, "requests")
    for i, user in enumerate(USERS):
        for j in range(rng.randint(1, 3)):
            at = start + minutes(3 + 13 * i) + timedelta(seconds=25 * j)
            yield reading(PORTAL, Domain.CYBER, "failed_login", 1, at, "event", source=user)
    # A scan: high-severity IDS alerts a little under a minute apart (5 in 10 min: level 1) ...
    for i in range(6):
        at = start + minutes(6) + timedelta(seconds=55 * i)
        yield reading(IDS, Domain.CYBER, "ids_alert_high", 1, at, "alert", source=ATTACKER)
    # ... then password guessing: a failed login every 2 s for 4 minutes (20 in 5 min:
    # level 1; 100: level 2), with the IDS's brute-force signatures firing along.
    guess_from = start + minutes(12)
    for i in range(120):
        at = guess_from + timedelta(seconds=2 * i)
        yield reading(PORTAL, Domain.CYBER, "failed_login", 1, at, "event", source=ATTACKER)
    for i in range(16):
        at = guess_from + timedelta(seconds=15 * i + 7)
        yield reading(IDS, Domain.CYBER, "ids_alert_high", 1, at, "alert", source=ATTACKER)
    if not reported:
        return
    yield report(
        scenario, 1, start, minutes(18), domain=Domain.CYBER, category="intrusion",
        severity=Severity.MODERATE, areas=["bn-kinh-bac"], reporter="ca-tinh-pa05",
        text=f"Phát hiện dò quét và dò mật khẩu từ {ATTACKER} vào cổng thông tin điện tử tỉnh; "
        "đã chặn địa chỉ tại tường lửa.",
    )  # fmt: skip


def build(start: datetime) -> Iterator[Event]:
    yield from attack(start, random.Random(2025_11_10))


SCENARIO = Scenario(
    name="cyber",
    summary_vi="Tấn công dò mật khẩu rồi DDoS vào cổng thông tin điện tử tỉnh",
    summary_en="A brute-force, then a DDoS attack on the provincial web portal",
    duration=DURATION,
    build=build,
)
