"""canhbao's HTTP APIs checked against their own OpenAPI documents by a schema-driven
fuzzer (schemathesis): each API is served for real on 127.0.0.1, its document read
from the URL it publishes, and every operation called with generated requests, valid
and invalid. No answer may be a 5xx; every answer must be one the document declares
(status, content type, headers, body schema); a request the document allows must be
accepted and one it excludes refused (the document says what the server accepts).

No broker: the ingest API writes to a memory sink, the record's API reads a SQLite
record filled with a recorded stream. So it runs once, on the embedded-broker run
(``--broker tansu``). An API more is one entry in ``APIS`` and one fixture.

Examples per operation and kind: ``CANHBAO_SCHEMA_EXAMPLES`` (default 30)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance

from alerting.directory import Directory
from feeds.apikeys import KeyStore, Source, hash_key
from feeds.http_api import IngestAPI
from feeds.sink import MemorySink
from recorder import migrate
from recorder.api import RecordAPI
from recorder.decode import decode
from recorder.store import Store
from recorder.tokens import Tokens, add_department
from tests.record_db import incoming
from tests.record_stream import stream

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("CANHBAO_SCHEMA_EXAMPLES", "30"))
INGEST_KEY = "schemathesis-key-0123456789abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class Served:
    base_url: str
    openapi_url: str
    headers: dict[str, str]  # a client's credentials
    #: Checks that do not apply, each with the reason (none by default).
    excluded: tuple[Any, ...] = ()


class Server:
    """An aiohttp app on a free port of 127.0.0.1, in a thread with its own event loop
    (schemathesis calls it synchronously)."""

    def __init__(self, make: Callable[[], Awaitable[web.Application]]) -> None:
        self._make = make
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    def __enter__(self) -> Server:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(60)
        return self

    async def _start(self) -> None:
        self._runner = web.AppRunner(await self._make())
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def _only_on_the_embedded_run(request: pytest.FixtureRequest) -> None:
    kinds = [k.strip() for k in str(request.config.getoption("broker")).split(",")]
    if "tansu" not in kinds:
        pytest.skip("needs no broker: runs once, on the --broker tansu run")


@pytest.fixture(scope="module")
def ingest_api(request: pytest.FixtureRequest) -> Iterator[Served]:
    _only_on_the_embedded_run(request)
    directory = Directory.load(REPO / "config/geography.yaml", REPO / "config/directory.yaml")
    keys = KeyStore([Source(id="schemathesis", key_sha256=hash_key(INGEST_KEY))])

    async def make() -> web.Application:
        return IngestAPI(MemorySink(), keys, directory=directory).app()

    with Server(make) as server:
        base = f"http://127.0.0.1:{server.port}"
        yield Served(
            base,
            f"{base}/openapi.json",
            {"Authorization": f"Bearer {INGEST_KEY}"},
            # A schema-valid reading may still be refused (400, naming the field): its
            # station unknown to the geography, its time outside the live bounds. No
            # JSON schema can say so; the document's 400 does, and
            # tests/unit/test_openapi.py checks every bound the schema can state.
            excluded=(positive_data_acceptance,),
        )


@pytest.fixture(scope="module")
def record_api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    _only_on_the_embedded_run(request)
    folder = tmp_path_factory.mktemp("record-api")
    token = add_department(folder / "tokens.yaml", "national", [], [])
    store: dict[str, Store] = {}

    async def make() -> web.Application:
        s = store["s"] = Store.open(f"sqlite+aiosqlite:///{folder / 'record.db'}")
        await migrate.upgrade(s.engine)
        await s.apply("g", decode(incoming(stream())), {})
        return RecordAPI(s.engine, Tokens(folder / "tokens.yaml")).app()

    with Server(make) as server:
        base = f"http://127.0.0.1:{server.port}"
        yield Served(base, f"{base}/api/v1/openapi.json", {"Authorization": f"Bearer {token}"})


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


#: A request the document excludes must be refused with a 4xx, whichever fits it
#: (413 for a batch over the limit, 415 for another media type), never served.
CONFIG = SchemathesisConfig.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": ["4XX"]}}}
)


def fuzz(served: Served) -> list[str]:
    """Every operation of the document ``served`` publishes, fuzzed with requests it
    allows and with requests it excludes; what failed, one line each (empty: none)."""
    schema = schemathesis.openapi.from_url(served.openapi_url, config=CONFIG)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in GenerationMode:
            # The credentials are fixed in every case: a "negative" case must get its
            # data wrong, not just lose the login (that 401 is tested on its own).
            @given(case=operation.as_strategy(generation_mode=mode, headers=served.headers))
            @FUZZ
            def check(case: Any) -> None:
                case.call_and_validate(
                    base_url=served.base_url,
                    # The test gives the credentials itself, so schemathesis cannot
                    # tell a login it made up from ours; each API's 401 for a missing,
                    # unknown or doubled key has its own unit test.
                    excluded_checks=[ignored_auth, *served.excluded],
                )

            try:
                check()
            except Unsatisfiable:
                pass  # nothing to get wrong (GET /healthz takes no input): no negative case
            except Exception as exc:  # hypothesis raises the smallest failing case's error
                failures.append(f"{operation.label} ({mode.value} data): {exc}")
    return failures


def test_the_ingest_api_keeps_to_its_openapi_document(ingest_api: Served) -> None:
    assert fuzz(ingest_api) == []


def test_the_record_api_keeps_to_its_openapi_document(record_api: Served) -> None:
    assert fuzz(record_api) == []
