"""The console's JSON side: the record's read-only API mounted under ``/api/v1`` (the
departments' tokens, as ``canhbao record --api`` serves it), and ``/openapi.json``
describing every JSON endpoint the console serves: the record's (bearer token) and the
console's own under ``/api/console/`` (the login session's cookie)."""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from console.pages import Site, Sources
from console.pages.map import OPENAPI_PATHS as MAP_PATHS

RECORD_PREFIX = "/api/v1"


def document(record_openapi: dict[str, Any], record_mounted: bool) -> dict[str, Any]:
    """The console's OpenAPI 3.1 document: the record API's paths (when it is mounted),
    with their bearer security, and the console's own, with the session cookie."""
    record = copy.deepcopy(record_openapi) if record_mounted else {}
    components = record.get("components", {})
    schemas = {
        **components.get("schemas", {}),
        "Error": {"type": "object", "properties": {"error": {"type": "string"}},
                  "required": ["error"]},
    }  # fmt: skip
    paths: dict[str, Any] = {}
    for path, item in record.get("paths", {}).items():
        for op in item.values():
            op.setdefault("security", record.get("security", [{"bearer": []}]))
        paths[path] = item
    paths.update(copy.deepcopy(MAP_PATHS))
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "canhbao operator console: JSON endpoints",
            "version": "1",
            "description": "The record's read-only API under /api/v1 (a department's token: "
            "Authorization: Bearer) and the console's own JSON under /api/console (the "
            "session cookie a login sets). Pages (HTML) are not described here.",
        },
        "components": {
            "securitySchemes": {
                **components.get("securitySchemes", {}),
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "canhbao_session"},
            },
            "schemas": schemas,
            "responses": {
                "LoginNeeded": {
                    "description": "no session, or an expired one: log in",
                    "content": error,
                },
                "Unavailable": {
                    "description": "what this answer needs is not configured",
                    "content": error,
                },
            },
        },
        "paths": dict(sorted(paths.items())),
    }


def register(app: web.Application, site: Site, sources: Sources) -> None:
    mounted = sources.record_api is not None
    if sources.record_api is not None:
        app.add_subapp(RECORD_PREFIX, sources.record_api)
    spec = document(sources.record_openapi, mounted)

    async def openapi(request: web.Request) -> web.StreamResponse:
        return web.json_response(spec)

    app.router.add_get("/openapi.json", openapi)
