"""The area map (``/map``): the province's communes drawn from the geography config,
coloured by the highest active warning level, with the level written beside every
colour; the stations as named points; a commune's warnings on a click.

Leaflet comes from the npm registry (package-lock.json, ``make setup``) and is served
from ``/vendor/leaflet/``: no tiles, no CDN (the centre may be cut off). The colours
follow the levels of the live stream; the page fetches ``/api/console/levels`` again
whenever the live stream (the same server-sent events) says a warning changed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from alerting import palette
from alerting.cap import level_text
from console.geo import area_levels, geojson
from console.i18n import t
from console.pages import Site, Sources

LEAFLET = "leaflet/dist"


def alarm_label(level: int, level_name: str, hazard: str, lang: str) -> str:
    """A level as written beside its colour: its number and the rule's name for it as
    the bulletins write it ("cấp 2 · báo động II"), as on the live stream."""
    word = t("level", lang).lower()
    if not level_name:
        return f"{word} {level}"
    return f"{word} {level} · {level_text(hazard, level, level_name, lang)}"


def register(app: web.Application, site: Site, sources: Sources) -> None:
    geo = sources.geography
    features = geojson(geo) if geo is not None else None
    names = {c.code: c.name for c in geo.communes} if geo is not None else {}
    leaflet = sources.node_modules / LEAFLET
    has_leaflet = (leaflet / "leaflet.js").is_file()
    colours = json.dumps({c.level: c.hex for c in palette.PALETTE.values()})

    def levels(request: web.Request) -> dict[str, Any]:
        lang = site.lang(request)
        found = area_levels(request.app[site.board].warnings.values())
        for area in found.values():
            area["label"] = alarm_label(area["level"], area["level_name"], area["hazard"], lang)
            for w in area["warnings"]:
                w["label"] = alarm_label(w["level"], w["level_name"], w["hazard"], lang)
        return found

    async def page(request: web.Request) -> web.StreamResponse:
        found = levels(request)
        communes = [
            {"code": c.code, "name": c.name, "province": c.province,
             "mapped": bool(c.polygon), **found.get(c.code, {"level": 0})}
            for c in (geo.communes if geo is not None else [])
        ]  # fmt: skip
        communes.sort(key=lambda c: (-c["level"], c["name"]))
        return site.render(
            request, "map.html", has_leaflet=has_leaflet, has_geography=geo is not None,
            colours=colours, since=request.app[site.board].cursor(),
            communes=communes, unmapped=[names.get(c, c) for c in
                                         (features or {}).get("unmapped", [])],
        )  # fmt: skip

    async def areas(request: web.Request) -> web.StreamResponse:
        if features is None:
            return web.json_response({"error": "no geography configured"}, status=503)
        return web.json_response(features, content_type="application/geo+json")

    async def levels_json(request: web.Request) -> web.StreamResponse:
        return web.json_response({"at": datetime.now(UTC).isoformat(), "areas": levels(request)})

    app.router.add_get("/map", page)
    app.router.add_get("/api/console/areas", areas)
    app.router.add_get("/api/console/levels", levels_json)
    if has_leaflet:
        app.router.add_static("/vendor/leaflet/", leaflet)


OPENAPI_PATHS: dict[str, Any] = {
    "/api/console/areas": {
        "get": {
            "summary": "The province's communes (polygons) and stations (points) as GeoJSON "
            "(RFC 7946: [lon, lat], closed rings)",
            "security": [{"session": []}],
            "responses": {
                "200": {
                    "description": "a FeatureCollection; 'unmapped' lists communes without a "
                    "polygon",
                    "content": {"application/geo+json": {"schema": {
                        "type": "object",
                        "required": ["type", "features"],
                        "properties": {
                            "type": {"const": "FeatureCollection"},
                            "features": {"type": "array", "items": {"type": "object"}},
                            "unmapped": {"type": "array", "items": {"type": "string"}},
                        },
                    }}},
                },
                "401": {"$ref": "#/components/responses/LoginNeeded"},
                "503": {"$ref": "#/components/responses/Unavailable"},
            },
        }
    },
    "/api/console/levels": {
        "get": {
            "summary": "Each commune with an active warning: its highest level, written out, "
            "and its active warnings (highest first)",
            "security": [{"session": []}],
            "responses": {
                "200": {
                    "description": "the communes' levels now",
                    "content": {"application/json": {"schema": {
                        "type": "object",
                        "required": ["at", "areas"],
                        "properties": {
                            "at": {"type": "string", "format": "date-time"},
                            "areas": {"type": "object", "additionalProperties": {
                                "type": "object",
                                "required": ["level", "label", "warnings"],
                                "properties": {
                                    "level": {"type": "integer", "minimum": 1, "maximum": 5},
                                    "level_name": {"type": "string"},
                                    "label": {"type": "string"},
                                    "warnings": {"type": "array", "items": {"type": "object"}},
                                },
                            }},
                        },
                    }}},
                },
                "401": {"$ref": "#/components/responses/LoginNeeded"},
            },
        }
    },
}  # fmt: skip
