"""The record's read-only API: departments' tokens (hashed at rest), scoped by domain
and commune; 401 without a known token, 403 outside the scope."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from recorder import migrate
from recorder.api import RecordAPI
from recorder.decode import decode
from recorder.store import Store
from recorder.tokens import Tokens, add_department, remove_department
from tests.record_db import incoming
from tests.record_stream import stream
from topics.models import Domain

Client = TestClient[Any, Any]


@pytest.fixture
async def tokens(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "tokens.yaml"
    return {
        "path": path,
        "all": add_department(path, "national", [], []),
        "water": add_department(path, "snnmt", [Domain.WATER], []),
        "health": add_department(path, "syt", [Domain.HEALTH], []),
        "commune": add_department(path, "ubnd-bn-tien-du", [], ["bn-tien-du"]),
    }


@pytest.fixture
async def client(tmp_path: Path, tokens: dict[str, Any]) -> AsyncIterator[Client]:
    store = Store.open(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    await migrate.upgrade(store.engine)
    await store.apply("g", decode(incoming(stream())), {})
    api = RecordAPI(store.engine, Tokens(tokens["path"]))
    async with TestClient(TestServer(api.app())) as c:
        yield c
    await store.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_no_token_or_a_wrong_one_is_401(client: Client) -> None:
    for headers in ({}, bearer("not-a-token"), {"Authorization": "Basic eDp5"}):
        r = await client.get("/api/v1/warnings", headers=headers)
        assert r.status == 401
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert "token" in (await r.json())["error"]


async def test_a_health_token_cannot_read_water_warnings(
    client: Client, tokens: dict[str, Any]
) -> None:
    health = bearer(tokens["health"])
    r = await client.get("/api/v1/warnings?domain=water", headers=health)
    assert r.status == 403 and "syt may not read water warnings" in (await r.json())["error"]
    r = await client.get("/api/v1/warnings/water.flood.1:st-1", headers=health)
    assert r.status == 403
    r = await client.get("/api/v1/indicators?period=2025-Q4&domain=water", headers=health)
    assert r.status == 403
    # Unfiltered, it lists only what it may read: no health warning was recorded.
    r = await client.get("/api/v1/warnings", headers=health)
    assert r.status == 200 and await r.json() == []


async def test_each_department_reads_its_scope(client: Client, tokens: dict[str, Any]) -> None:
    everything = await (await client.get("/api/v1/warnings", headers=bearer(tokens["all"]))).json()
    water = await (await client.get("/api/v1/warnings", headers=bearer(tokens["water"]))).json()
    assert len(everything) == 36
    assert water and {w["domain"] for w in water} == {"water"} and len(water) == 24
    mine = await (
        await client.get("/api/v1/warnings?latest=true", headers=bearer(tokens["commune"]))
    ).json()
    assert mine and all("bn-tien-du" in w["communes"] for w in mine)
    r = await client.get("/api/v1/warnings?commune=bn-vu-ninh", headers=bearer(tokens["commune"]))
    assert r.status == 403
    # Warning 3 is about air quality: not the water department's.
    r = await client.get("/api/v1/warnings/water.flood.3:st-3", headers=bearer(tokens["water"]))
    assert r.status == 403
    r = await client.get("/api/v1/warnings/water.flood.3:st-3", headers=bearer(tokens["all"]))
    timeline = await r.json()
    assert r.status == 200 and len(timeline["states"]) == 3
    assert timeline["broadcasts"][0]["status"] == "sent"
    r = await client.get("/api/v1/warnings/nothing:here", headers=bearer(tokens["all"]))
    assert r.status == 404


async def test_indicators_within_the_scope(client: Client, tokens: dict[str, Any]) -> None:
    r = await client.get("/api/v1/indicators?period=2025-Q4", headers=bearer(tokens["water"]))
    found = await r.json()
    assert r.status == 200 and found["total"]["warnings"] == 8
    assert {g["domain"] for g in found["groups"]} == {"water"}
    r = await client.get("/api/v1/indicators?period=2025-Q9", headers=bearer(tokens["water"]))
    assert r.status == 400 and "not a period" in (await r.json())["error"]


async def test_tokens_are_kept_hashed_and_a_removed_one_stops_working(
    client: Client, tokens: dict[str, Any]
) -> None:
    text = tokens["path"].read_text()
    assert all(tokens[k] not in text for k in ("all", "water", "health", "commune"))
    assert len(yaml.safe_load(text)["departments"]) == 4
    assert tokens["path"].stat().st_mode & 0o077 == 0
    assert remove_department(tokens["path"], "snnmt")
    r = await client.get("/api/v1/warnings", headers=bearer(tokens["water"]))
    assert r.status == 401


async def test_the_openapi_document_needs_no_token_and_lists_the_paths(client: Client) -> None:
    r = await client.get("/api/v1/openapi.json")
    doc = await r.json()
    assert r.status == 200 and doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {
        "/api/v1/warnings",
        "/api/v1/warnings/{warning_id}",
        "/api/v1/indicators",
    }
    assert set(doc["paths"]["/api/v1/warnings"]["get"]["responses"]) == {"200", "400", "401", "403"}


async def test_a_time_without_an_offset_is_read_in_the_display_time_zone(
    tmp_path: Path, tokens: dict[str, Any]
) -> None:
    """09:00 without an offset is 02:00 UTC in Vietnam (every warning, 03:00 UTC on, is
    after it) and 09:00 UTC where the record is shown in UTC (none is)."""
    store = Store.open(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    await migrate.upgrade(store.engine)
    await store.apply("g", decode(incoming(stream())), {})
    found = {}
    for zone in (ZoneInfo("Asia/Ho_Chi_Minh"), UTC):
        api = RecordAPI(store.engine, Tokens(tokens["path"]), tz=zone)
        async with TestClient(TestServer(api.app())) as c:
            r = await c.get(
                "/api/v1/warnings?since=2025-10-14T09:00", headers=bearer(tokens["all"])
            )
            found[str(zone)] = len(await r.json())
    await store.close()
    assert found == {"Asia/Ho_Chi_Minh": 36, "UTC": 0}
