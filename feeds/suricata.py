"""``canhbao feed suricata EVE_FILE``: Suricata's EVE JSON log to cyber readings and reports.

What becomes what (the shapes ``rules/cyber.yaml`` expects):

- an ``alert`` of ``alert.severity`` 1 (high) → one ``ids_alert_high`` reading of value 1
  at the sensor's station (``host`` → station mapping, default ``soc-bac-ninh``);
- an ``alert`` of severity 1 whose category says the attack succeeded (privilege gain,
  trojan; or a signature id given with ``--report-sid``) → also a ``Report`` (domain
  cyber, category ``intrusion``) for the communes the sensor's station warns; at most one
  per signature and station every 10 minutes of EVE time, so a burst is one report;
- an ``http`` event answered 401 → one ``failed_login`` reading at the web station
  (default ``portal-bac-ninh``) with ``source`` = the client address;
- a ``stats`` event → one ``http_requests`` reading at the web station: the HTTP
  transactions since the previous ``stats`` (``app_layer.tx.http`` is a running total).

Other events and lower-severity alerts are skipped. A line that is not a JSON object, or
an alert without the fields above, is counted and dead-lettered with its line number.

Time is judged as the pipeline's validate stage judges it (:mod:`pipeline.validate`):
events older than the live lateness bound (``CANHBAO_MAX_LATENESS``) are history (an
old log read ``--from-start``) and are not sent, so they never page anyone; the
tailer logs how many per batch and counts them (``canhbao_feed_refused_total{reason=
"historical"}``): the EVE file keeps them, for ``canhbao rules backtest``. Events dated
too far ahead of the clock, or implausibly old, are dead-lettered as bad lines.

Tailing: the file is followed as it grows; a rotation (rename, new file) is noticed and
the old file read to its end first; a truncation starts again at 0. The byte offset, the
file's inode and the line number are kept in a state file, written after Kafka
acknowledged each batch. A restart resumes there: nothing is lost, and nothing is
repeated unless the process dies between Kafka's acknowledgement and the state write, in
which case that one batch is sent again (at least once). If the file was rotated while
the tailer was down, the old file is found by its inode among its siblings
(``eve.json.1``) and finished first. Without a state file the tailer starts at the end
of the file (``--from-start``: at the beginning).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from pydantic import ValidationError

from pipeline.validate import Timeliness, TimePolicy, Untimely, check_time, span
from topics.atomic import replace_file
from topics.catalogue import DEADLETTER, INGEST_READINGS, INGEST_REPORTS
from topics.errors import field_errors
from topics.metrics import Metrics
from topics.models import DeadLetter, Domain, Reading, Report, Severity, utcnow

if TYPE_CHECKING:
    from collections.abc import Callable

    from alerting.directory import Directory
    from feeds.sink import Sink

log = logging.getLogger(__name__)

FEED = "suricata"
STAGE = "suricata"
DEFAULT_STATION = "soc-bac-ninh"
DEFAULT_WEB_STATION = "portal-bac-ninh"
REPORT_COOLDOWN = timedelta(minutes=10)
MAX_LINE = 1024 * 1024  # a longer "line" is not an EVE record
# Suricata's classification.config categories that mean an attack got in.
REPORT_CATEGORIES: Mapping[str, Severity] = {
    "Successful Administrator Privilege Gain": Severity.EXTREME,
    "Successful User Privilege Gain": Severity.SEVERE,
    "A Network Trojan was detected": Severity.SEVERE,
}


@dataclass(frozen=True)
class EveConfig:
    station: str = DEFAULT_STATION
    sensors: Mapping[str, str] = field(default_factory=dict)  # EVE host -> station
    web_station: str = DEFAULT_WEB_STATION
    report_categories: Mapping[str, Severity] = field(default_factory=lambda: REPORT_CATEGORIES)
    report_sids: frozenset[int] = frozenset()
    areas: Mapping[str, list[str]] = field(default_factory=dict)  # station -> communes


@dataclass
class Converted:
    """What one EVE line became."""

    readings: list[Reading] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    error: str | None = None  # set: the line is dead-lettered


class EveError(ValueError):
    pass


def eve_time(value: Any) -> datetime:
    # Suricata writes "2025-11-10T02:00:01.123456+0700", which fromisoformat reads.
    if not isinstance(value, str):
        raise EveError("no timestamp")
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise EveError(f"timestamp {value!r} is not ISO 8601") from None
    if at.tzinfo is None:
        raise EveError(f"timestamp {value!r} has no UTC offset")
    return at


def _signature_id(value: Any) -> int:
    """Suricata's rule number; 0 when absent. It writes an integer: digits in a string
    and whole floats pass, anything else is refused by name (int() alone took True and
    1.5, and raised OverflowError on an infinite value, out of the converter)."""
    if value is None or value == "":
        return 0
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise EveError(f"alert.signature_id {value!r} is not a rule number")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-") or "unknown"


class EveConverter:
    """EVE records to readings and reports. No I/O; it remembers the last HTTP total per
    sensor (saved in the state file) and when it last reported each signature at each
    station (in memory: after a restart the first alert of a burst is reported again,
    with the same ``report_id`` if it is the same flow)."""

    def __init__(self, config: EveConfig, http_totals: dict[str, int] | None = None) -> None:
        self.config = config
        self.http_totals: dict[str, int] = dict(http_totals or {})
        self._reported: dict[tuple[int, str], datetime] = {}

    def convert(self, line: bytes) -> Converted:
        try:
            record = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            return Converted(error="not UTF-8 text")
        except json.JSONDecodeError as exc:
            return Converted(error=f"not valid JSON: {exc.msg} (column {exc.colno})")
        if not isinstance(record, dict):
            return Converted(error=f"expected a JSON object, got {type(record).__name__}")
        handler = {"alert": self._alert, "http": self._http, "stats": self._stats}.get(
            str(record.get("event_type"))
        )
        if handler is None:
            return Converted()
        try:
            return handler(record)
        except (EveError, ValidationError, TypeError, ValueError) as exc:
            return Converted(error=f"{record.get('event_type')} event: {_why(exc)}")

    def station_of(self, record: dict[str, Any]) -> str:
        host = record.get("host")
        return self.config.sensors.get(str(host), self.config.station)

    def _sensor(self, record: dict[str, Any]) -> str:
        return str(record.get("host") or "eve")

    def _alert(self, record: dict[str, Any]) -> Converted:
        alert = record.get("alert")
        if not isinstance(alert, dict):
            raise EveError("no alert object")
        severity = alert.get("severity")
        if not isinstance(severity, int) or isinstance(severity, bool):
            raise EveError("alert.severity is not a number")
        at = eve_time(record.get("timestamp"))
        if severity != 1:
            return Converted()
        station = self.station_of(record)
        reading = Reading(
            station_id=station,
            domain=Domain.CYBER,
            metric="ids_alert_high",
            value=1,
            observed_at=at,
            source=f"suricata:{self._sensor(record)}"[:128],
        )
        report = self._report(record, alert, station, at)
        return Converted(readings=[reading], reports=[report] if report else [])

    def _report(
        self, record: dict[str, Any], alert: dict[str, Any], station: str, at: datetime
    ) -> Report | None:
        sid = _signature_id(alert.get("signature_id"))
        level = self.config.report_categories.get(str(alert.get("category")))
        if level is None and sid in self.config.report_sids:
            level = Severity.SEVERE
        areas = self.config.areas.get(station)
        if level is None or not areas:
            return None
        last = self._reported.get((sid, station))
        if last is not None and timedelta(0) <= at - last < REPORT_COOLDOWN:
            return None
        self._reported[(sid, station)] = at
        # Alerts without a flow (decoder events) are told apart by their time; the id
        # must stay a valid report id whatever the line carries (lower case, no "+").
        flow = _slug(str(record.get("flow_id") or at.strftime("%Y%m%dt%H%M%S%f")))
        where = f"{record.get('src_ip', '?')} → {record.get('dest_ip', '?')}"
        return Report(
            report_id=f"suricata:{_slug(self._sensor(record))}:{sid}:{flow}"[:128],
            domain=Domain.CYBER,
            category="intrusion",
            severity=level,
            areas=areas,
            observed_at=at,
            reporter=f"suricata:{self._sensor(record)}"[:128],
            text=f"IDS: {alert.get('signature', '?')} ({alert.get('category', '?')}), {where}",
        )

    def _http(self, record: dict[str, Any]) -> Converted:
        http = record.get("http")
        if not isinstance(http, dict) or http.get("status") not in (401, "401"):
            return Converted()
        client = record.get("src_ip")
        if not isinstance(client, str) or not client:
            raise EveError("an HTTP 401 without src_ip")
        reading = Reading(
            station_id=self.config.web_station,
            domain=Domain.CYBER,
            metric="failed_login",
            value=1,
            observed_at=eve_time(record.get("timestamp")),
            source=client,
        )
        return Converted(readings=[reading])

    def _stats(self, record: dict[str, Any]) -> Converted:
        stats = record.get("stats")
        total = _path(stats, "app_layer", "tx", "http")
        if total is None:
            return Converted()
        if not isinstance(total, int) or isinstance(total, bool) or total < 0:
            raise EveError("stats.app_layer.tx.http is not a count")
        sensor = self._sensor(record)
        previous = self.http_totals.get(sensor)
        self.http_totals[sensor] = total
        if previous is None:
            return Converted()  # the first total is the baseline
        # A smaller total means Suricata restarted and counts from 0 again.
        delta = total - previous if total >= previous else total
        reading = Reading(
            station_id=self.config.web_station,
            domain=Domain.CYBER,
            metric="http_requests",
            value=delta,
            observed_at=eve_time(record.get("timestamp")),
            source=f"suricata:{sensor}"[:128],
        )
        return Converted(readings=[reading])


def _path(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _why(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(field_errors(exc))
    return str(exc)


# --- Tailing -----------------------------------------------------------------------------


@dataclass
class TailState:
    """Where the tailer is: which file (by inode), how far, and the HTTP totals."""

    inode: int
    device: int
    offset: int = 0
    line: int = 0
    http_totals: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> TailState | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            raise EveError(f"{path}: unreadable state file: {exc}") from exc

    def save(self, path: Path) -> None:
        replace_file(path, json.dumps(asdict(self)))  # a crash leaves the old or the new


@dataclass
class TailStats:
    lines: int = 0
    sent: int = 0
    rejected: int = 0
    historical: int = 0  # events older than the live lateness bound: not sent
    rotations: int = 0
    truncations: int = 0


Line = tuple[int, int, bytes]  # byte offset, line number, the line without its newline


class EveTailer:
    """Follows one EVE file: ``run`` until cancelled, or ``step`` for one pass."""

    def __init__(
        self,
        path: Path,
        state_path: Path,
        sink: Sink,
        config: EveConfig | None = None,
        *,
        from_start: bool = False,
        poll_interval: float = 0.2,
        chunk: int = MAX_LINE,
        policy: TimePolicy | None = None,
        clock: Callable[[], datetime] = utcnow,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics.default()
        self.path, self.state_path, self.sink = path, state_path, sink
        self.converter = EveConverter(config or EveConfig())
        self.policy = policy or TimePolicy()
        self.clock = clock
        self.poll_interval = poll_interval
        self.chunk = chunk
        self.stats = TailStats()
        self._file: BinaryIO | None = None
        self._state: TailState | None = None
        self._resume = not from_start  # take the saved state at the next open
        self._start_at_end = not from_start  # no saved state: skip what is already there
        self._finishing = False  # reading a file that was rotated away while we were down

    async def run(self) -> None:
        try:
            while True:
                if not await self.step():
                    await asyncio.sleep(self.poll_interval)
        finally:
            # A cancel can land while the last offset is being saved in a thread, which
            # then finishes after we return: a tailer started right after (a restart in
            # the same process) would read the older offset and send lines again. Saving
            # here makes "run() returned" mean "the offset of what Kafka took is on disk".
            self._save()
            self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    async def step(self) -> bool:
        """Read and send what is there now; True when something happened."""
        if self._file is None and not await asyncio.to_thread(self._open):
            return False
        if await self._drain(final=False):
            return True
        change = await asyncio.to_thread(self._changed)
        if change == "truncated":
            log.warning("suricata: %s was truncated; reading it from the start", self.path)
            self.stats.truncations += 1
            assert self._state is not None
            self._state.offset = self._state.line = 0
            await asyncio.to_thread(self._save)
            return True
        if change == "rotated":
            # The old file was quiet for a whole pass: finish it, then take the new one.
            await self._drain(final=True)
            log.info("suricata: %s was rotated; following the new file", self.path)
            self.stats.rotations += 1
            self.close()
            self._finishing = self._resume = self._start_at_end = False
            await asyncio.to_thread(self._open)
            return True
        return False

    # -- opening ---------------------------------------------------------------------

    def _open(self) -> bool:
        """Open the file and find where to start; False while it does not exist."""
        saved = TailState.load(self.state_path) if self._resume else None
        if saved is not None:
            self.converter.http_totals = dict(saved.http_totals)
            old = self._sibling_with(saved.inode, saved.device)
            if old is not None and old != self.path:
                log.info("suricata: finishing %s, rotated while the tailer was stopped", old)
                self._file, self._state, self._finishing = open(old, "rb"), saved, True  # noqa: SIM115
                return True
        try:
            self._file = open(self.path, "rb")  # noqa: SIM115 - open while following
        except FileNotFoundError:
            self._start_at_end = False  # when it appears it is new: read all of it
            return False
        st = os.fstat(self._file.fileno())
        same = saved is not None and (saved.inode, saved.device) == (st.st_ino, st.st_dev)
        if saved is not None and same and saved.offset <= st.st_size:
            self._state = saved
        else:
            if saved is not None:
                log.warning(
                    "suricata: %s was %s while the tailer was stopped; reading it from "
                    "the start (events after offset %d of the old file may be lost)",
                    self.path,
                    "truncated" if same else "replaced",
                    saved.offset,
                )
            at = st.st_size if saved is None and self._start_at_end else 0
            self._state = TailState(st.st_ino, st.st_dev, at)
        self._resume = True
        self._save()
        return True

    def _sibling_with(self, inode: int, device: int) -> Path | None:
        """The file beside ``path`` (``eve.json``, ``eve.json.1``, ...) with this inode."""
        with contextlib.suppress(OSError):
            for p in sorted(self.path.parent.glob(glob.escape(self.path.name) + "*")):
                st = p.stat()
                if (st.st_ino, st.st_dev) == (inode, device):
                    return p
        return None

    def _changed(self) -> str:
        """``same``, ``rotated`` (a new file has the name) or ``truncated``."""
        assert self._file is not None and self._state is not None
        if self._finishing:
            return "rotated"
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return "same"  # renamed and the new one not there yet: the old may still grow
        fst = os.fstat(self._file.fileno())
        if (st.st_ino, st.st_dev) != (fst.st_ino, fst.st_dev):
            return "rotated"
        return "truncated" if st.st_size < self._state.offset else "same"

    # -- reading ---------------------------------------------------------------------

    def _read(self, final: bool) -> tuple[list[Line], int, int]:
        """The complete lines after the offset, and the offset and line number after them.

        ``final``: the file will not grow any more, so a last line without a newline
        counts too."""
        assert self._file is not None and self._state is not None
        self._file.seek(self._state.offset)
        data = self._file.read(self.chunk)
        end = data.rfind(b"\n") + 1
        if end == 0 and (final or len(data) >= self.chunk):
            end = len(data)  # a partial last line, or one longer than any EVE record
        lines, offset, number = [], self._state.offset, self._state.line
        for raw in data[:end].splitlines(keepends=True):
            number += 1
            line = raw.rstrip(b"\r\n")
            if line.strip():
                lines.append((offset, number, line))
            offset += len(raw)
        return lines, offset, number

    async def _drain(self, final: bool) -> bool:
        """Send the lines the file has now, batch by batch; True if there were any."""
        got = False
        while True:
            assert self._state is not None
            lines, offset, number = await asyncio.to_thread(self._read, final)
            if offset == self._state.offset:
                return got
            got = True
            await self._send(lines)
            # Only now, with every message acknowledged, move the saved offset on.
            self._state.offset, self._state.line = offset, number
            await asyncio.to_thread(self._save)

    async def _send(self, lines: Iterable[Line]) -> None:

        messages: list[tuple[str, bytes | None, bytes]] = []
        counts = {"readings": 0, "reports": 0}
        now = self.clock()
        history: list[int] = []  # line numbers of events too old to be live
        for offset, number, line in lines:
            self.stats.lines += 1
            out = self.converter.convert(line)
            if out.error is None:
                untimely = self._untimely(out, now)
                if untimely is not None and untimely.kind is Timeliness.HISTORICAL:
                    history.append(number)
                    continue
                if untimely is not None:
                    out = Converted(error=untimely.reason)
            if out.error is not None:
                messages.append(self._dead(offset, number, line, out.error))
                self.metrics.feed_refused.labels(FEED, "bad_line").inc()
                continue
            for r in out.readings:
                messages.append((INGEST_READINGS, r.station_id.encode(), r.to_bytes()))
            for rep in out.reports:
                messages.append((INGEST_REPORTS, rep.areas[0].encode(), rep.to_bytes()))
            counts["readings"] += len(out.readings)
            counts["reports"] += len(out.reports)
        if messages:
            await self.sink.send_many(messages)
        for kind, n in counts.items():
            if n:
                self.metrics.feed_messages.labels(FEED, self.path.name, kind).inc(n)
        self.stats.sent += sum(counts.values())
        if history:
            self.stats.historical += len(history)
            self.metrics.feed_refused.labels(FEED, "historical").inc(len(history))
            log.warning(
                "suricata: %d events of %s (lines %d-%d) older than %s: not sent; history "
                "never raises a live warning (evaluate it with canhbao rules backtest)",
                len(history),
                self.path,
                history[0],
                history[-1],
                span(self.policy.max_lateness),
            )

    def _untimely(self, out: Converted, now: datetime) -> Untimely | None:
        """Why the events of one line are not live data (their first problem), or None."""
        times = [r.observed_at for r in out.readings] + [r.observed_at for r in out.reports]
        for at in times:
            untimely = check_time(at, now, self.policy)
            if untimely is not None:
                return untimely
        return None

    def _dead(self, offset: int, number: int, line: bytes, why: str) -> tuple[str, bytes, bytes]:
        reason = f"{self.path} line {number}: {why}"
        log.warning("suricata: %s", reason)
        self.stats.rejected += 1
        source = f"suricata:{self.path}"
        dead = DeadLetter(
            source_topic=source, offset=offset, original=line[:65536], stage=STAGE, reason=reason
        )
        return (DEADLETTER, source.encode(), dead.to_bytes())

    def _save(self) -> None:
        if self._state is not None:
            self._state.http_totals = dict(self.converter.http_totals)
            self._state.save(self.state_path)


def parse_sensors(items: Iterable[str]) -> dict[str, str]:
    out = {}
    for item in items:
        host, sep, station = item.partition("=")
        if not sep or not host or not station:
            raise EveError(f"--sensor {item!r}: expected HOST=STATION")
        out[host] = station
    return out


def station_areas(geography_path: Path, directory_path: Path) -> dict[str, list[str]]:
    """Station -> the communes it warns (its own commune if it names none)."""
    from alerting.directory import Directory

    return areas_of(Directory.load(geography_path, directory_path))


def areas_of(directory: Directory) -> dict[str, list[str]]:
    return {s.id: list(s.warns or [s.commune]) for s in directory.geography.stations}


def unknown_stations(config: EveConfig, directory: Directory) -> list[str]:
    """The configured stations the geography does not know: their readings would all
    be refused by the pipeline, so the feed refuses to start instead."""
    named = {config.station, config.web_station, *config.sensors.values()}
    return sorted(s for s in named if directory.station(s) is None)
