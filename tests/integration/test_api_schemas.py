"""canhbao's HTTP APIs checked against their own OpenAPI documents by a schema-driven
fuzzer (schemathesis): each API is served for real on 127.0.0.1, its document read
from the URL it publishes, and every operation called with generated requests, valid
and invalid. No answer may be a 5xx; every answer must be one the document declares
(status, content type, headers, body schema); a request the document allows must be
accepted and one it excludes refused (the document says what the server accepts).

No broker: the ingest API writes to a memory sink, the record's API reads a SQLite
record filled with a recorded stream, the console reads a board of warnings held in
memory and that record (its ``/openapi.json`` describes the record's API it mounts,
with a department's token, and its own JSON, with a login's session cookie). So it
runs once, on the embedded-broker run (``--broker tansu``). An API more is one fixture
and one test.

Examples per operation and kind: ``CANHBAO_SCHEMA_EXAMPLES`` (default 30)."""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from prometheus_client import CollectorRegistry
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance

from alerting.directory import Directory
from canhbao.console_record import RecordReader
from console.accounts import Role
from console.board import Board
from console.pages import Sources
from console.web import SESSION_COOKIE, make_app
from feeds.apikeys import KeyStore, Source, hash_key
from feeds.http_api import IngestAPI
from feeds.sink import MemorySink
from recorder import migrate
from recorder.api import RecordAPI, openapi
from recorder.decode import decode
from recorder.store import Store
from recorder.tokens import Tokens, add_department
from tests.console_kit import PASSWORD, MemoryWriter, accounts, make_warning
from tests.record_db import incoming
from tests.record_stream import stream
from topics.metrics import Metrics
from topics.models import Area

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("CANHBAO_SCHEMA_EXAMPLES", "30"))
INGEST_KEY = "schemathesis-key-0123456789abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class Served:
    base_url: str
    openapi_url: str
    headers: dict[str, str]  # a client's credentials
    cookies: dict[str, str] = field(default_factory=dict)  # a browser's session
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


@pytest.fixture(scope="module")
def console_api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """The operator console as ``canhbao console`` serves it: the record's API mounted
    under /api/v1 and the console's own JSON, behind a viewer's login."""
    _only_on_the_embedded_run(request)
    folder = tmp_path_factory.mktemp("console-api")
    token = add_department(folder / "tokens.yaml", "national", [], [])
    directory = Directory.load(REPO / "config/geography.yaml", REPO / "config/directory.yaml")
    people = accounts(folder / "console.db", ("viewer", Role.VIEWER))
    vu_ninh = Area(code="bn-vu-ninh", name="Vũ Ninh", province="bac-ninh")
    kinh_bac = Area(code="bn-kinh-bac", name="Kinh Bắc", province="bac-ninh")
    board = Board()
    for w in (
        make_warning(level=2),
        make_warning(level=3, warning_id="b", areas=[vu_ninh, kinh_bac]),
        make_warning(level=0, warning_id="cleared", areas=[kinh_bac], transition="cleared"),
    ):
        board.apply_warning(w)
    store: dict[str, Store] = {}

    async def make() -> web.Application:
        s = store["s"] = Store.open(f"sqlite+aiosqlite:///{folder / 'record.db'}")
        await migrate.upgrade(s.engine)
        await s.apply("g", decode(incoming(stream())), {})
        sources = Sources(
            geography=directory.geography,
            record=RecordReader(s.engine, {}),
            record_api=RecordAPI(s.engine, Tokens(folder / "tokens.yaml")).subapp(),
            record_openapi=openapi(),
        )
        return make_app(people, board, MemoryWriter(), metrics=Metrics(CollectorRegistry()),
                        sources=sources)  # fmt: skip

    with Server(make) as server:
        base = f"http://127.0.0.1:{server.port}"
        # A viewer logs in as a browser does (the login page's nonce, then the form).
        with requests.Session() as browser:
            page = browser.get(f"{base}/login").text
            nonce = re.search(r'name="nonce" value="([^"]+)"', page)
            assert nonce is not None
            r = browser.post(f"{base}/login", allow_redirects=False, data={
                "name": "viewer", "password": PASSWORD, "nonce": nonce.group(1)})  # fmt: skip
            assert r.status_code == 303, r.text
            session = r.cookies[SESSION_COOKIE]
            # The session is one (an answer of 401 is in the document: a lost login would
            # pass unnoticed), and the board's warnings are in the answers checked.
            levels = browser.get(f"{base}/api/console/levels").json()["areas"]
            assert levels["bn-kinh-bac"]["level"] == 3 and levels["bn-vu-ninh"]["level"] == 3
        yield Served(
            base,
            f"{base}/openapi.json",
            # Both credentials on every request: the record's paths ask for the token,
            # the console's for the session (each refuses a missing one on its own).
            {"Authorization": f"Bearer {token}"},
            {SESSION_COOKIE: session},
        )


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
            @given(
                case=operation.as_strategy(
                    generation_mode=mode, headers=served.headers, cookies=served.cookies
                )
            )
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
            # Schemathesis raises the smallest failing case's failures as a group: a
            # BaseExceptionGroup, not an Exception (it stopped the test at the first API).
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{operation.label} ({mode.value} data): {exc}")
    return failures


def test_the_ingest_api_keeps_to_its_openapi_document(ingest_api: Served) -> None:
    assert fuzz(ingest_api) == []


def test_the_record_api_keeps_to_its_openapi_document(record_api: Served) -> None:
    assert fuzz(record_api) == []


def test_the_console_api_keeps_to_its_openapi_document(console_api: Served) -> None:
    assert fuzz(console_api) == []
