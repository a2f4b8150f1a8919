"""What ``GET /openapi.json`` declares is what the ingest API accepts (issue 15, item 11).

A client generated from the document, or a schema-driven fuzzer, trusts its bounds:
a value the document allows must be accepted, one it excludes must be refused with a
400. Each bounded or unbounded integer field of the request schemas is probed at its
declared edges, through the real server (one known-good item, one field changed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from alerting.directory import Directory
from feeds.apikeys import KeyStore, Source, hash_key
from feeds.http_api import READINGS_PATH, REPORTS_PATH, IngestAPI
from feeds.sink import MemorySink

KEY = "openapi-key-0123456789abcdefghijklmnopqrstuvwxyz"
FAR = 10**6  # "any integer": far from every bound a field could silently have

Client = TestClient[Any, Any]


def now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def good_items() -> dict[str, tuple[str, dict[str, Any]]]:
    """Per request schema: its path and an item the server accepts."""
    return {
        "Reading": (
            READINGS_PATH,
            {"station_id": "dap-cau", "domain": "water", "metric": "water_level_m",
             "value": 4.2, "unit": "m", "observed_at": now(), "area": "bn-vu-ninh"},
        ),
        "Report": (
            REPORTS_PATH,
            {"report_id": "r-openapi", "domain": "water", "category": "flooding",
             "severity": "Moderate", "areas": ["bn-vu-ninh"], "observed_at": now(),
             "reporter": "UBND phường Vũ Ninh"},
        ),
    }  # fmt: skip


@pytest.fixture
async def client(directory: Directory) -> AsyncIterator[Client]:
    keys = KeyStore([Source(id="openapi-test", key_sha256=hash_key(KEY))])
    c: Client = TestClient(
        TestServer(IngestAPI(MemorySink(), keys, directory=directory).app(), host="127.0.0.1")
    )
    await c.start_server()
    yield c
    await c.close()


async def post(client: Client, path: str, item: dict[str, Any]) -> int:
    resp = await client.post(path, json=item, headers={"Authorization": f"Bearer {KEY}"})
    return resp.status


def resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = doc["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def integer_probes(prop: dict[str, Any]) -> list[tuple[int, bool]]:
    """(value, the document allows it) at the declared edges, or far out when unbounded."""
    probes: list[tuple[int, bool]] = []
    low = prop.get("minimum")
    if "exclusiveMinimum" in prop:
        low = prop["exclusiveMinimum"] + 1
    high = prop.get("maximum")
    if "exclusiveMaximum" in prop:
        high = prop["exclusiveMaximum"] - 1
    probes += [(low, True), (low - 1, False)] if low is not None else [(-FAR, True)]
    probes += [(high, True), (high + 1, False)] if high is not None else [(FAR, True)]
    return probes


async def test_the_documented_integer_bounds_are_the_ones_the_server_keeps(client: Client) -> None:
    doc = await (await client.get("/openapi.json")).json()
    checked: list[str] = []
    wrong: list[str] = []
    for name, (path, good) in good_items().items():
        assert await post(client, path, good) == 202, f"the known-good {name} was refused"
        for field, raw in doc["components"]["schemas"][name]["properties"].items():
            prop = resolve(doc, raw)
            if prop.get("type") != "integer":
                continue
            checked.append(f"{name}.{field}")
            for value, allowed in integer_probes(prop):
                status = await post(client, path, {**good, field: value})
                if (status == 202) != allowed or status not in (202, 400):
                    said = "allows" if allowed else "excludes"
                    wrong.append(f"{name}.{field} = {value}: the document {said} it, got {status}")
    assert "Reading.schema_version" in checked and "Report.schema_version" in checked
    assert not wrong, "\n".join(wrong)


async def test_a_value_outside_a_documented_enum_is_refused(client: Client) -> None:
    doc = await (await client.get("/openapi.json")).json()
    enums = 0
    for name, (path, good) in good_items().items():
        for field, raw in doc["components"]["schemas"][name]["properties"].items():
            prop = resolve(doc, raw)
            if "enum" in prop:
                enums += 1
                assert await post(client, path, {**good, field: "not-in-the-enum"}) == 400
            if "const" in prop:
                enums += 1
                assert await post(client, path, {**good, field: f"not-{prop['const']}"}) == 400
    assert enums >= 3  # Reading.domain, Report.domain, Report.severity


async def test_schema_version_declares_exactly_the_versions_this_build_reads(
    client: Client,
) -> None:
    from topics.models import SCHEMA_VERSION

    doc = await (await client.get("/openapi.json")).json()
    for name in ("Reading", "Report"):
        prop = doc["components"]["schemas"][name]["properties"]["schema_version"]
        assert (prop["minimum"], prop["maximum"]) == (1, SCHEMA_VERSION)
