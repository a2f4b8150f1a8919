"""The area map's data, pure: the province's communes and stations as GeoJSON (from the
geography config) and each commune's highest active warning level (from the board).

The geography config writes points as [lat, lon] (as CAP does); GeoJSON wants
[lon, lat] (RFC 7946, section 3.1.1) and closed rings (the first position repeated
last), so both are converted here, once, and unit-tested."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import Any

from alerting.directory import Geography
from pipeline.lifecycle import is_active
from topics.models import Warning


def _ring(polygon: Sequence[tuple[float, float]]) -> list[list[float]]:
    ring = [[lon, lat] for lat, lon in polygon]
    if ring[0] != ring[-1]:
        ring.append(list(ring[0]))
    # RFC 7946: exterior rings counter-clockwise (the shoelace sum is positive).
    area2 = sum(a[0] * b[1] - b[0] * a[1] for a, b in pairwise(ring))
    return ring if area2 >= 0 else ring[::-1]


def geojson(geo: Geography) -> dict[str, Any]:
    """A FeatureCollection: one Polygon per commune that has a polygon, one Point per
    station that has coordinates. Communes without a polygon are left out (there is
    nothing to draw) and named in the collection's ``unmapped`` member."""
    features: list[dict[str, Any]] = []
    unmapped: list[str] = []
    provinces = {p.code: p.name for p in geo.provinces}
    for c in geo.communes:
        if not c.polygon:
            unmapped.append(c.code)
            continue
        features.append(
            {
                "type": "Feature",
                "id": c.code,
                "geometry": {"type": "Polygon", "coordinates": [_ring(c.polygon)]},
                "properties": {
                    "kind": "commune",
                    "code": c.code,
                    "name": c.name,
                    "province": c.province,
                    "province_name": provinces.get(c.province, c.province),
                },
            }
        )
    for s in geo.stations:
        if s.lat is None or s.lon is None:
            continue
        features.append(
            {
                "type": "Feature",
                "id": f"station:{s.id}",
                "geometry": {"type": "Point", "coordinates": [s.lon, s.lat]},
                "properties": {
                    "kind": "station",
                    "id": s.id,
                    "name": s.name,
                    "commune": s.commune,
                    "domain": s.domain.value,
                    "river": s.river,
                },
            }
        )
    return {"type": "FeatureCollection", "features": features, "unmapped": unmapped}


def area_levels(warnings: Iterable[Warning]) -> dict[str, dict[str, Any]]:
    """Each commune touched by an active warning (raised, not cleared nor closed): its
    highest level, that warning's level name, and its active warnings, highest first."""
    found: dict[str, list[Warning]] = {}
    for w in warnings:
        if w.level <= 0 or not is_active(w):
            continue
        for a in {a.code for a in w.areas}:
            found.setdefault(a, []).append(w)
    out: dict[str, dict[str, Any]] = {}
    for code, ws in sorted(found.items()):
        ws.sort(key=lambda w: (-w.level, -w.updated_at.timestamp()))
        top = ws[0]
        out[code] = {
            "level": top.level,
            "level_name": top.level_name,
            "hazard": top.hazard,
            "warnings": [
                {"id": w.warning_id, "level": w.level, "level_name": w.level_name,
                 "hazard": w.hazard, "domain": w.domain.value, "subject": w.subject,
                 "status": w.status.value, "exercise": w.exercise}
                for w in ws
            ],
        }  # fmt: skip
    return out
