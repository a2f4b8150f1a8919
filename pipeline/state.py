"""Keys of the engine's state store: built and read here only.

The store is a ``MutableMapping`` of JSON-safe dicts (a Faust table live, a dict in
backtests and rule tests); its changelog is compacted on these keys, so their form
never changes for a given input. A key is ``<kind>|<parts>``:

==============================================  =============================================
``w|<warning_id>``                              the warning's last state (``Warning`` as JSON)
``e|<rule>|<subject>``                          the rule's evaluator state for one subject
``q|<station>|<metric>|<area>|<source>``        the data-quality gate's state of one series
                                                from one source (area, source: "" if none)
``l|<station>``                                 last time a station was heard from, the
                                                metrics heard and its recent reporting gaps
``x|<area>``                                    active warnings touching a commune
``c|<command_id>``                              an operator command already applied
``p|<warning_id>``                              versions published, with a digest of each
==============================================  =============================================
"""

from __future__ import annotations

from enum import StrEnum

from topics import ids


class Kind(StrEnum):
    WARNING = "w"
    EVALUATOR = "e"
    QUALITY = "q"
    HEARD = "l"
    AREA = "x"
    COMMAND = "c"
    PUBLISHED = "p"

    @property
    def prefix(self) -> str:
        """What every key of this kind starts with."""
        return _PREFIXES[self]


# Built once: keys are made for every reading, and an enum property call is not free.
_PREFIXES = {k: f"{k.value}|" for k in Kind}
_W, _E, _Q, _L = (_PREFIXES[k] for k in (Kind.WARNING, Kind.EVALUATOR, Kind.QUALITY, Kind.HEARD))


class InvalidKey(ValueError):
    def __init__(self, kind: Kind, key: str) -> None:
        super().__init__(f"expected a state key {kind.prefix}... ({kind.name.lower()}), "
                         f"got {key!r}")  # fmt: skip


PUBLISHED = Kind.PUBLISHED.prefix


def kind_of(key: str) -> Kind | None:
    """The kind of a state key; None for a key the engine does not write."""
    head, sep, _ = key.partition("|")
    if not sep:
        return None
    try:
        return Kind(head)
    except ValueError:
        return None


def _rest(kind: Kind, key: str) -> str:
    if not key.startswith(kind.prefix):
        raise InvalidKey(kind, key)
    return key[len(kind.prefix) :]


# -- warnings ---------------------------------------------------------------------------


def warning_key(warning_id: str) -> str:
    return _W + warning_id


def rule_warning_key(rule_id: str, subject: str) -> str:
    """The key of the warning ``rule_id`` raises on ``subject``."""
    return warning_key(ids.warning_id(rule_id, subject))


def rule_warnings_prefix(rule_id: str) -> str:
    """What the keys of every warning of ``rule_id`` start with."""
    return rule_warning_key(rule_id, "")


def warning_of(key: str) -> str:
    """The warning id of a ``w|`` key."""
    return _rest(Kind.WARNING, key)


# -- rule evaluators ----------------------------------------------------------------------


def evaluator_key(rule_id: str, subject: str) -> str:
    return f"{_E}{rule_id}|{subject}"


def evaluators_prefix(rule_id: str) -> str:
    """What the keys of ``rule_id``'s evaluator states start with."""
    return evaluator_key(rule_id, "")


def evaluator_of(key: str) -> tuple[str, str]:
    """``(rule_id, subject)`` of an ``e|`` key."""
    rule_id, sep, subject = _rest(Kind.EVALUATOR, key).partition("|")
    if not sep:
        raise InvalidKey(Kind.EVALUATOR, key)
    return rule_id, subject


# -- the quality gate ---------------------------------------------------------------------


def quality_series(station_id: str, metric: str, area: str | None) -> str:
    """One timeline of the quality gate: a station's metric in one commune (a unit
    reporting several communes' counts keeps one per commune). Also its name in logs."""
    return f"{station_id}|{metric}|{area or ''}"


def quality_key(series: str, source: str | None) -> str:
    return f"{_Q}{series}|{source or ''}"


def is_quality_key(key: str) -> bool:
    return key.startswith(_Q)


# -- stations heard (staleness) ------------------------------------------------------------


def heard_key(station_id: str) -> str:
    return _L + station_id


def heard_station(key: str) -> str:
    """The station of an ``l|`` key."""
    return _rest(Kind.HEARD, key)


def is_heard_key(key: str) -> bool:
    return key.startswith(_L)


# -- communes, commands, published versions -------------------------------------------------


def area_key(area: str) -> str:
    return Kind.AREA.prefix + area


def command_key(command_id: str) -> str:
    return Kind.COMMAND.prefix + command_id


def published_key(warning_id: str) -> str:
    return PUBLISHED + warning_id
