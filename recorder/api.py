"""The record's read-only JSON API, for the departments' portals and the national
level (CAP stays the push format): ``GET /api/v1/warnings``, ``/api/v1/warnings/{id}``,
``/api/v1/indicators``, documented at ``/api/v1/openapi.json``.

Every request but the document needs ``Authorization: Bearer <token>`` of a
department (:mod:`recorder.tokens`): none or an unknown one is 401; asking for a
domain or an area outside the token's scope is 403; lists hold only what the scope
allows."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from recorder import queries
from recorder.indicators import indicators, parse_period
from recorder.tokens import Department, TokenFileError, Tokens

log = logging.getLogger(__name__)

LOCAL = timezone(timedelta(hours=7), "ICT")
DEPARTMENT = web.RequestKey("department", Department)  # set by the auth middleware
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="canhbao"'} if status == 401 else None
    return web.json_response({"error": message}, status=status, headers=headers)


def _when(request: web.Request, name: str, tz: tzinfo) -> datetime | None:
    text = request.query.get(name)
    if text is None:
        return None
    try:
        # An empty value is refused, not read as "no bound": the document says a time.
        when = datetime.fromisoformat(text)
    except ValueError:
        raise web.HTTPBadRequest(
            text=f'{{"error": "{name}: not an ISO 8601 time"}}', content_type="application/json"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=tz)


#: A quarter, month or year from 1900 to 2199 (``2025-Q4``, ``2025-10``, ``2025``).
PERIOD_PATTERN = r"^(19|20|21)[0-9]{2}(-Q[1-4]|-(0[1-9]|1[0-2]))?$"

#: The query parameters of ``GET /api/v1/warnings`` (its document lists the same).
WARNING_FILTERS = ("since", "until", "domain", "hazard", "level", "commune", "status", "latest")


def _unknown(query: Mapping[str, str], known: tuple[str, ...]) -> web.Response | None:
    """A 400 naming the parameters this endpoint does not take: a misspelt filter
    (``domian=water``) must not quietly answer with everything in scope."""
    extra = sorted(set(query) - set(known))
    if not extra:
        return None
    return _error(400, f"{', '.join(extra)}: not a parameter here (takes {', '.join(known)})")


class RecordAPI:
    def __init__(
        self,
        engine: AsyncEngine,
        tokens: Tokens,
        lead_receivers: Mapping[str, set[str]] | None = None,
        tz: tzinfo = LOCAL,
    ) -> None:
        self.engine = engine
        self.tokens = tokens
        self.lead_receivers = lead_receivers or {}
        # The zone of a time or period given without an offset: the record's display
        # zone (CANHBAO_DISPLAY_TIMEZONE), as on the command line.
        self.tz = tz

    def app(self) -> web.Application:
        """The API on its own, under /api/v1 (``canhbao record --api``)."""
        root = web.Application()
        root.add_subapp("/api/v1", self.subapp())
        return root

    def subapp(self) -> web.Application:
        """The API's routes, relative: mounted under /api/v1 by :meth:`app` and by the
        console (``add_subapp``)."""
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/openapi.json", self._openapi)
        app.router.add_get("/warnings", self._warnings)
        app.router.add_get("/warnings/{warning_id}", self._warning)
        app.router.add_get("/indicators", self._indicators)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/api/v1/openapi.json":
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _error(401, "an API token is required: Authorization: Bearer <token>")
        try:
            department = self.tokens.find(token.strip())
        except TokenFileError as exc:
            log.error("the API's token file cannot be read: %s", exc)
            return _error(503, "the API's token file cannot be read; see the server's log")
        if department is None:
            return _error(401, "unknown API token")
        request[DEPARTMENT] = department
        return await handler(request)

    @staticmethod
    def _department(request: web.Request) -> Department:
        return request[DEPARTMENT]

    @staticmethod
    def _refused(d: Department, domain: str | None, area: str | None) -> web.Response | None:
        if domain and not d.reads_domain(domain):
            return _error(403, f"{d.id} may not read {domain} warnings")
        if area and not d.reads_areas({area}):
            return _error(403, f"{d.id} may not read warnings of {area}")
        return None

    async def _warnings(self, request: web.Request) -> web.Response:
        d = self._department(request)
        q = request.query
        unknown = _unknown(q, WARNING_FILTERS)
        if unknown is not None:
            return unknown
        refused = self._refused(d, q.get("domain"), q.get("commune"))
        if refused is not None:
            return refused
        try:
            level = int(q["level"]) if "level" in q else None
        except ValueError:
            level = -1
        if level is not None and not 0 <= level <= 5:  # no warning has another level
            return _error(400, "level: a whole number from 0 to 5")
        f = queries.WarningFilter(
            since=_when(request, "since", self.tz),
            until=_when(request, "until", self.tz),
            domain=q.get("domain"),
            hazard=q.get("hazard"),
            level=level,
            commune=q.get("commune"),
            status=q.get("status"),
            latest=q.get("latest", "").lower() in ("1", "true", "yes"),
            domains=None if d.domains is None else tuple(x.value for x in d.domains),
            communes=None if d.areas is None else tuple(d.areas),
        )
        return web.json_response(await queries.warnings(self.engine, f))

    async def _warning(self, request: web.Request) -> web.Response:
        d = self._department(request)
        warning_id = request.match_info["warning_id"]
        found = await queries.timeline(self.engine, warning_id)
        if found is None or not found["states"]:
            return _error(404, f"nothing recorded about {warning_id}")
        state = found["states"][-1]
        communes = {c for s in found["states"] for c in s["communes"]}
        refused = self._refused(d, state["domain"], None)
        if refused is None and not d.reads_areas(communes):
            refused = _error(403, f"{d.id} may not read warnings of {', '.join(sorted(communes))}")
        return refused or web.json_response(found)

    async def _indicators(self, request: web.Request) -> web.Response:
        d = self._department(request)
        q = request.query
        unknown = _unknown(q, ("period", "area", "domain"))
        if unknown is not None:
            return unknown
        if "period" not in q:
            return _error(400, "period: required (2025-Q4, 2025-10, 2025 or a..b)")
        try:
            period = parse_period(q["period"], self.tz)
        except ValueError as exc:
            return _error(400, f"period: {exc}")
        refused = self._refused(d, q.get("domain"), q.get("area"))
        if refused is not None:
            return refused
        found = await indicators(
            self.engine,
            period,
            area=q.get("area"),
            domain=q.get("domain"),
            lead_receivers=self.lead_receivers,
            areas=None if d.areas is None else d.areas,
            domains=None if d.domains is None else [x.value for x in d.domains],
        )
        return web.json_response(found)

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi())


#: What the server parses a query parameter as, where it is more than any string
#: (a client or a fuzzer trusts the document: it must say what is refused).
_PARAM_SCHEMAS: dict[str, dict[str, Any]] = {
    "since": {"type": "string", "format": "date-time"},
    "until": {"type": "string", "format": "date-time"},
    "level": {"type": "integer", "minimum": 0, "maximum": 5},
}


def _params(*names: tuple[str, str]) -> list[dict[str, Any]]:
    return [
        {"name": n, "in": "query", "required": False,
         "schema": _PARAM_SCHEMAS.get(n, {"type": "string"}), "description": d}
        for n, d in names
    ]  # fmt: skip


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the record's API."""

    def errors(*codes: int) -> dict[str, Any]:
        text = {
            400: "a parameter is not valid",
            401: "no API token, or an unknown one",
            403: "the token's scope does not cover this domain or area",
            404: "nothing recorded about this warning",
        }
        return {
            str(c): {
                "description": text[c],
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
            for c in codes
        }

    def ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"200": {"description": description,
                        "content": {"application/json": {"schema": schema}}}}  # fmt: skip

    warning_state = {
        "type": "object",
        "description": "One warning state (version) as recorded",
        "properties": {
            name: {"type": t}
            for name, t in (
                ("warning_id", "string"), ("version", "integer"), ("updated_at", "string"),
                ("transition", "string"), ("domain", "string"), ("hazard", "string"),
                ("subject", "string"), ("level", "integer"), ("level_name", "string"),
                ("severity", "string"), ("status", "string"), ("scope_tier", "string"),
                ("phase", "integer"), ("lead_agency", "string"), ("raised_at", "string"),
                ("exercise", "boolean"), ("communes", "array"), ("evidence", "array"),
            )
        },
    }  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "canhbao threat record (read-only)",
            "version": "1",
            "description": "Warnings, their timelines and the indicators, for departments' "
            "portals and the national level. Each department's token reads the domains and "
            "communes it is scoped to. Times are ISO 8601; one without an offset, and a "
            "period, is read in the record's display time zone (CANHBAO_DISPLAY_TIMEZONE, "
            "Asia/Ho_Chi_Minh unless set).",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}},
                    "required": ["error"],
                },
                "WarningState": warning_state,
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/warnings": {
                "get": {
                    "summary": "Warning states, oldest first, within the token's scope",
                    "parameters": _params(
                        (
                            "since",
                            "from this time (ISO 8601; without an offset: the display time zone)",
                        ),
                        ("until", "before this time (ISO 8601, as since)"),
                        ("domain", "one domain"),
                        ("hazard", "one hazard"),
                        ("level", "one level, 0 to 5"),
                        ("commune", "one commune code"),
                        ("status", "new, verified, responding, recovering or closed"),
                        ("latest", "true: only each warning's newest state"),
                    ),
                    "responses": {
                        **ok(
                            "the states",
                            {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/WarningState"},
                            },
                        ),
                        **errors(400, 401, 403),
                    },
                }
            },
            "/api/v1/warnings/{warning_id}": {
                "get": {
                    "summary": "One warning's timeline: states, notifications, deliveries, "
                    "actions, broadcasts, and the readings of its stations around it",
                    "parameters": [
                        {
                            "name": "warning_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        **ok("the timeline", {"type": "object"}),
                        **errors(401, 403, 404),
                    },
                }
            },
            "/api/v1/indicators": {
                "get": {
                    "summary": "The indicators of a period (definitions in the README)",
                    "parameters": [
                        {
                            "name": "period",
                            "in": "query",
                            "required": True,
                            # The pattern holds the quarter, month and year forms; a
                            # range (first..last day, in order) is also taken, which
                            # no pattern can check for order.
                            "schema": {"type": "string", "pattern": PERIOD_PATTERN},
                            "description": "2025-Q4, 2025-10, 2025 or 2025-10-01..2025-12-31",
                        },
                        *_params(("area", "one commune code"), ("domain", "one domain")),
                    ],
                    "responses": {
                        **ok("the indicators", {"type": "object"}),
                        **errors(400, 401, 403),
                    },
                }
            },
        },
    }
