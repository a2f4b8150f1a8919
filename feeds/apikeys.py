"""Per-source API keys of the HTTP ingest API, kept as SHA-256 hashes in a YAML file.

A key is a 256-bit random token (``secrets.token_urlsafe(32)``), shown once when it is
made; the file keeps only its hash, so a copied or committed key file lets nobody send.
Each source may be limited to some domains and some stations. A source that may add
stations (``hold_unknown_stations``: a national network's gateway, say) gets its readings
from stations not yet in the geography held for its owner instead of refused. The
running API notices when the file changes, so ``canhbao feed keys add`` takes effect
without a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from topics import tokenfile
from topics.errors import field_errors
from topics.models import Domain, Identifier

log = logging.getLogger(__name__)

HEADER = """\
# API keys of the HTTP ingest API (`canhbao feed http`), one entry per source.
# Only the SHA-256 of each key is stored: the key itself is shown once, by
# `canhbao feed keys add SOURCE [--domain D] [--station S]`, and never again.
# domains / stations (optional) limit what the source may send; without them it may
# send any. A source limited to stations sends readings only, not reports.
# hold_unknown_stations: true lets a source add stations: its readings from stations not
# in the geography are held (kept for replay, listed in the answer) instead of refused.
"""


class KeyFileError(ValueError):
    """The key file cannot be read or is not valid."""


class Source(BaseModel):
    """One sender: who it is, the hash of its key and what it may send."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Identifier
    key_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    domains: list[Domain] | None = Field(default=None, min_length=1)
    stations: list[Identifier] | None = Field(default=None, min_length=1)
    hold_unknown_stations: bool = Field(
        default=False,
        description="readings from stations not in the geography are held (202, kept for "
        "replay) instead of refused (400): for sources that may add stations",
    )
    note: str = ""

    @model_validator(mode="after")
    def _hold_needs_open_stations(self) -> Source:
        if self.hold_unknown_stations and self.stations is not None:
            raise ValueError(
                "hold_unknown_stations is for sources that may add stations; "
                "this one is limited to its stations"
            )
        return self

    @property
    def sample(self) -> bool:
        return self.note.upper().startswith("SAMPLE")

    def refusal(self, domain: Domain, station: str | None) -> tuple[str, str] | None:
        """(field, why) when this source may not send for ``domain`` / ``station``;
        ``station`` None means a report, which a station-bound source may not send."""
        if self.domains is not None and domain not in self.domains:
            allowed = ", ".join(d.value for d in self.domains)
            return "domain", f"source {self.id!r} may not send domain {domain.value!r} ({allowed})"
        if self.stations is None:
            return None
        if station is None:
            return "(item)", f"source {self.id!r} is limited to stations and may not send reports"
        if station not in self.stations:
            return "station_id", f"source {self.id!r} may not send for station {station!r}"
        return None


class KeyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sources: list[Source] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> KeyFile:
        ids = [s.id for s in self.sources]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"source ids must be unique: {', '.join(twice)} appear twice")
        return self

    def get(self, source_id: str) -> Source | None:
        return next((s for s in self.sources if s.id == source_id), None)


def hash_key(key: str) -> str:
    return tokenfile.hash_secret(key)


def new_key() -> str:
    return tokenfile.new_secret()


def read_key_file(path: Path) -> KeyFile:
    """The key file at ``path``; a missing file is an empty one."""
    return tokenfile.read(path, KeyFile, KeyFileError)


def write_key_file(path: Path, keys: KeyFile) -> None:
    """Replace the file atomically: the running API never reads half a file. The old
    file's mode is kept, so the API's user can still read it (hashes only)."""
    tokenfile.write(path, HEADER, "sources", keys.sources)


def add_source(
    path: Path,
    source_id: str,
    *,
    domains: Iterable[Domain] = (),
    stations: Iterable[str] = (),
    rotate: bool = False,
    hold_unknown_stations: bool | None = None,
) -> str:
    """Make a key for ``source_id``, store its hash and return the key (shown once).

    ``rotate`` replaces the key of an existing source, keeping its limits unless new
    ones are given (``hold_unknown_stations`` None: as before, or off for a new source);
    the old key stops working as soon as the API sees the file."""
    keys = read_key_file(path)
    old = keys.get(source_id)
    if old is not None and not rotate:
        raise KeyFileError(f"source {source_id!r} already exists; --rotate gives it a new key")
    if old is None and rotate:
        raise KeyFileError(f"source {source_id!r} does not exist; nothing to rotate")
    key = new_key()
    try:
        entry = Source(
            id=source_id,
            key_sha256=hash_key(key),
            domains=list(domains) or (old.domains if old else None),
            stations=list(stations) or (old.stations if old else None),
            hold_unknown_stations=(
                hold_unknown_stations
                if hold_unknown_stations is not None
                else (old.hold_unknown_stations if old else False)
            ),
            note=old.note if old and not old.sample else "",  # a new key is no sample
        )
    except ValidationError as exc:
        raise KeyFileError("; ".join(field_errors(exc))) from None
    others = [s for s in keys.sources if s.id != source_id]
    write_key_file(path, KeyFile(sources=[*others, entry]))
    return key


def remove_source(path: Path, source_id: str) -> bool:
    keys = read_key_file(path)
    if keys.get(source_id) is None:
        return False
    write_key_file(path, KeyFile(sources=[s for s in keys.sources if s.id != source_id]))
    return True


class KeyStore:
    """The sources the API accepts, reloaded when the key file changes."""

    def __init__(self, sources: Iterable[Source] = (), path: Path | None = None) -> None:
        self.path = path
        self._sources = tuple(sources)
        self._stamp: tuple[int, int, int] | None = None

    @classmethod
    def load(cls, path: Path) -> KeyStore:
        if not path.exists():
            raise KeyFileError(f"{path}: no key file; make one with `canhbao feed keys add`")
        store = cls(path=path)
        store.refresh(strict=True)
        return store

    @property
    def sources(self) -> tuple[Source, ...]:
        return self._sources

    def refresh(self, *, strict: bool = False) -> None:
        """Reload the file if it changed. A broken edit keeps the keys in force (logged),
        so a typo in the file does not lock every sender out."""
        if self.path is None:
            return
        try:
            st = self.path.stat()
        except OSError:
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        try:
            self._sources = tuple(read_key_file(self.path).sources)
        except KeyFileError as exc:
            if strict:
                raise
            log.error("api keys: keeping the previous keys: %s", exc)
        self._stamp = stamp

    def authenticate(self, key: str | None) -> Source | None:
        """The source whose key this is, or None."""
        if not key:
            return None
        return tokenfile.find(self._sources, lambda s: s.key_sha256, key)
