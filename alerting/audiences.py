"""Commune committees, loudspeakers, citizen subscribers and partners (configuration)."""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from alerting.directory import ConfigError, _expand_values
from topics import yamlio
from topics.errors import field_errors


class Committee(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    commune: str
    name: str
    webhook: str | None = None
    sms: str | None = None
    email: str | None = None


class Loudspeaker(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    commune: str
    topic: str


class Synthetic(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    count: int = Field(ge=0, le=10_000_000)
    seed: int = 0
    langs: dict[str, float] = Field(default_factory=lambda: {"vi": 1.0})


class SubscriberList(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    commune: str
    file: str | None = None
    synthetic: Synthetic | None = None


class Partner(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    code: str
    name: str
    lang: str = "en"
    cap: str | None = None
    webhook: str | None = None


class AudiencesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    committees: list[Committee] = Field(default_factory=list)
    loudspeakers: list[Loudspeaker] = Field(default_factory=list)
    subscribers: list[SubscriberList] = Field(default_factory=list)
    partners: list[Partner] = Field(default_factory=list)


@dataclass(frozen=True)
class Subscriber:
    phone: str
    lang: str


def synthetic_subscribers(commune: str, spec: Synthetic) -> list[Subscriber]:
    """Deterministic fake numbers (Viettel-like prefixes), clearly not real people."""
    rng = random.Random(f"{commune}:{spec.seed}")
    langs = list(spec.langs)
    weights = [spec.langs[k] for k in langs]
    out = []
    for i in range(spec.count):
        phone = f"+8498{spec.seed % 10}{i:07d}"
        out.append(Subscriber(phone, rng.choices(langs, weights)[0]))
    return out


@dataclass
class Audiences:
    data: AudiencesFile
    base: Path

    @classmethod
    def load(cls, path: Path) -> Audiences:
        try:
            raw = yamlio.safe_load(path.read_text(encoding="utf-8")) or {}
            data = AudiencesFile.model_validate(_expand_values(raw))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        except ValidationError as exc:
            raise ConfigError("\n".join(field_errors(exc, "(file)", prefix=f"{path}: "))) from exc
        return cls(data, path.parent)

    def committee(self, commune: str) -> Committee | None:
        return next((c for c in self.data.committees if c.commune == commune), None)

    def loudspeaker(self, commune: str) -> Loudspeaker | None:
        return next((s for s in self.data.loudspeakers if s.commune == commune), None)

    def partner(self, code: str) -> Partner | None:
        return next((p for p in self.data.partners if p.code == code), None)

    @cached_property
    def _subscribers(self) -> dict[str, list[Subscriber]]:
        out: dict[str, list[Subscriber]] = {}
        for entry in self.data.subscribers:
            subs: list[Subscriber] = []
            if entry.synthetic is not None:
                subs += synthetic_subscribers(entry.commune, entry.synthetic)
            if entry.file is not None:
                with open(self.base / entry.file, encoding="utf-8") as fh:
                    for row in csv.DictReader(fh):
                        subs.append(Subscriber(row["phone"], row.get("lang") or "vi"))
            out.setdefault(entry.commune, []).extend(subs)
        return out

    def subscribers(self, commune: str) -> list[Subscriber]:
        return self._subscribers.get(commune, [])
