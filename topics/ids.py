"""Every identifier the pipeline builds, and how to read one back: one place, so
that a change of format cannot miss a reader.

The formats (they travel as Kafka keys, in receipts, in the ledger and in the
``Idempotency-Key`` header: they never change for a given input):

=============================  ======================================================
warning                        ``<rule_id>:<subject>`` (a rule id has no ``:``; the
                               subject may)
warning state                  ``<warning>:v<version>``
corroboration (a command id)   ``<report_id>:<warning>``
notification of a state        ``<warning>:v<version>:<target>:<channel>``, with
                               ``:reminder<n>`` for a group's n-th reminder and
                               ``:cancel`` for the Cancel of a citizen message
notification of a digest       ``<group>:f<flush>:<digest12>:<target>:<channel>``
                               (``digest12``: the flush's kind and the states it lists)
broadcast (to citizens)        ``<warning>:v<version>:citizens``
group key                      ``<receiver>|<channel>|live|<labels>`` (or ``exercise``)
group id                       ``grp-<first 16 hex of sha256(group key)>``
idempotency key                the notification id (stable across retries)
CAP identifier                 ``urn:canhbao:<warning, CAP-safe>:v<version>``
=============================  ======================================================

Builders return plain ``str`` (the messages keep ``str`` fields); ``*.parse``
returns the typed parts, or raises :class:`InvalidId` saying what is wrong. A
notification's target is assumed to hold no ``:`` when it is read back (receiver
ids in the shipped directory do not).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NewType
from urllib.parse import unquote


class InvalidId(ValueError):
    """A string that is not an identifier of the kind asked for."""

    def __init__(self, kind: str, text: str, expected: str) -> None:
        super().__init__(f"not a {kind}: {text!r} (expected {expected})")
        self.kind = kind
        self.text = text


# The channels a notification id may end with (topics.models.Channel's values; kept
# here so that this module, below the models, imports nothing of the project).
CHANNELS = ("webhook", "email", "sms", "loudspeaker", "cap")
_CHANNEL = "|".join(CHANNELS)


# --- warnings ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WarningId:
    """One warning: a rule on one subject (station, commune, province, source)."""

    rule_id: str
    subject: str

    FORMAT = "<rule_id>:<subject>"

    def __str__(self) -> str:
        return warning_id(self.rule_id, self.subject)

    @classmethod
    def parse(cls, text: str) -> WarningId:
        rule_id, sep, subject = text.partition(":")
        if not sep or not rule_id or not subject:
            raise InvalidId("warning id", text, cls.FORMAT)
        return cls(rule_id, subject)


def warning_id(rule_id: str, subject: str) -> str:
    if ":" in rule_id or not rule_id:
        raise InvalidId("rule id", rule_id, "a non-empty id without ':'")
    return f"{rule_id}:{subject}"


def corroboration_id(report_id: str, warning: str) -> str:
    """The id of the command by which a report corroborates a warning: one per pair, so
    that a replayed report corroborates nothing twice."""
    return f"{report_id}:{warning}"


def subject_of(warning: str) -> str:
    """The subject of a warning id (its Kafka partition key)."""
    return WarningId.parse(warning).subject


@dataclass(frozen=True, slots=True)
class StateId:
    """One state (version) of one warning."""

    warning_id: str
    version: int

    FORMAT = "<warning>:v<version>"
    _RE = re.compile(r"(?P<w>.+):v(?P<n>[0-9]+)", re.DOTALL)

    def __str__(self) -> str:
        return state_id(self.warning_id, self.version)

    @classmethod
    def parse(cls, text: str) -> StateId:
        m = cls._RE.fullmatch(text)
        if m is None:
            raise InvalidId("warning state id", text, cls.FORMAT)
        return cls(m["w"], int(m["n"]))


def state_id(warning: str, version: int) -> str:
    return f"{warning}:v{version}"


# --- notifications -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NotificationId:
    """A notification about one warning state for one target on one channel."""

    warning_id: str
    version: int
    target: str
    channel: str
    reminder: int | None = None  # the group's n-th reminder of this state
    cancel: bool = False  # the Cancel of a citizen message

    FORMAT = "<warning>:v<n>:<target>:<channel>[:reminder<n>][:cancel]"
    _RE = re.compile(
        rf"(?P<w>.+):v(?P<n>[0-9]+):(?P<t>[^:]+):(?P<c>{_CHANNEL})"
        r"(?::reminder(?P<r>[0-9]+))?(?P<x>:cancel)?",
        re.DOTALL,
    )

    def __str__(self) -> str:
        nid = notification_id(self.warning_id, self.version, self.target, self.channel)
        if self.reminder is not None:
            nid = reminder_id(nid, self.reminder)
        return cancel_id(nid) if self.cancel else nid

    @classmethod
    def parse(cls, text: str) -> NotificationId:
        m = cls._RE.fullmatch(text)
        if m is None:
            raise InvalidId("notification id", text, cls.FORMAT)
        reminder = int(m["r"]) if m["r"] is not None else None
        return cls(m["w"], int(m["n"]), m["t"], m["c"], reminder, m["x"] is not None)


@dataclass(frozen=True, slots=True)
class DigestId:
    """The notification of one flush of an aggregation group listing several states."""

    group_id: str
    flush: int
    digest: str
    target: str
    channel: str

    FORMAT = "grp-<16 hex>:f<flush>:<12 hex>:<target>:<channel>"
    _RE = re.compile(
        rf"(?P<g>grp-[0-9a-f]{{16}}):f(?P<f>[0-9]+):(?P<d>[0-9a-f]{{12}}):(?P<t>[^:]+)"
        rf":(?P<c>{_CHANNEL})"
    )

    def __str__(self) -> str:
        return f"{self.group_id}:f{self.flush}:{self.digest}:{self.target}:{self.channel}"

    @classmethod
    def parse(cls, text: str) -> DigestId:
        m = cls._RE.fullmatch(text)
        if m is None:
            raise InvalidId("digest notification id", text, cls.FORMAT)
        return cls(m["g"], int(m["f"]), m["d"], m["t"], m["c"])


def notification_id(warning: str, version: int, target: str, channel: str) -> str:
    """``channel``: a ``Channel`` (a ``StrEnum``: its value) or its value."""
    return f"{warning}:v{version}:{target}:{channel}"


def reminder_id(nid: str, n: int) -> str:
    """The id of the ``n``-th reminder (counting from 1) of notification ``nid``."""
    return f"{nid}:reminder{n}"


def cancel_id(nid: str) -> str:
    """The Cancel of notification ``nid``: its own id, so that the delivery ledger
    never takes a Cancel for the message it cancels."""
    return f"{nid}:cancel"


def digest_id(
    group: str,
    flush: int,
    kind: str,
    states: Iterable[tuple[str, int]],
    target: str,
    channel: str,
) -> str:
    """A digest's id: unique per flush, and stable when the flush is replayed."""
    versions = ",".join(state_id(w, v) for w, v in states)
    digest = hashlib.sha256(f"{kind}|{versions}".encode()).hexdigest()[:12]
    return str(DigestId(group, flush, digest, target, str(channel)))


def parse_notification_id(text: str) -> NotificationId | DigestId:
    """Either kind of notification id; :class:`InvalidId` if it is neither."""
    if text.startswith("grp-"):
        try:
            return DigestId.parse(text)
        except InvalidId:
            pass  # a warning whose rule id starts with "grp-"
    try:
        return NotificationId.parse(text)
    except InvalidId:
        raise InvalidId("notification id", text, f"{NotificationId.FORMAT} or "
                        f"{DigestId.FORMAT}") from None  # fmt: skip


# The key a receiver de-duplicates on (``Idempotency-Key`` header, e-mail and SMS
# gateway ids): the notification id, the same on every retry of one message.
IdempotencyKey = NewType("IdempotencyKey", str)


def idempotency_key(notification: str) -> IdempotencyKey:
    return IdempotencyKey(notification)


# --- broadcasts ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BroadcastId:
    """A message to the citizens of a warning's communes, held for two operators."""

    warning_id: str
    version: int

    FORMAT = "<warning>:v<version>:citizens"
    _RE = re.compile(r"(?P<w>.+):v(?P<n>[0-9]+):citizens", re.DOTALL)

    def __str__(self) -> str:
        return broadcast_id(self.warning_id, self.version)

    @classmethod
    def parse(cls, text: str) -> BroadcastId:
        m = cls._RE.fullmatch(text)
        if m is None:
            raise InvalidId("broadcast id", text, cls.FORMAT)
        return cls(m["w"], int(m["n"]))


def broadcast_id(warning: str, version: int) -> str:
    return f"{state_id(warning, version)}:citizens"


def is_broadcast_of(text: str, warning: str) -> bool:
    """Whether ``text`` is a broadcast id of (any state of) ``warning``."""
    try:
        return BroadcastId.parse(text).warning_id == warning
    except InvalidId:
        return False


# --- aggregation groups --------------------------------------------------------------

MAX_LABELS = 300  # characters of label values in a group key before they are hashed


@dataclass(frozen=True, slots=True)
class GroupKey:
    """An aggregation group: one target on one channel, live or exercise, and the
    values of the route's ``group_by`` labels (hashed beyond :data:`MAX_LABELS`)."""

    receiver_id: str
    channel: str
    exercise: bool
    values: str

    FORMAT = "<receiver>|<channel>|live|exercise|<labels>"

    def __str__(self) -> str:
        mode = "exercise" if self.exercise else "live"
        return f"{self.receiver_id}|{self.channel}|{mode}|{self.values}"

    @classmethod
    def parse(cls, text: str) -> GroupKey:
        parts = text.split("|", 3)
        if len(parts) != 4 or parts[2] not in ("live", "exercise") or not parts[0]:
            raise InvalidId("group key", text, cls.FORMAT)
        if parts[1] not in CHANNELS:
            raise InvalidId("group key", text, f"a channel of {', '.join(CHANNELS)}")
        return cls(parts[0], parts[1], parts[2] == "exercise", parts[3])


def group_key(receiver_id: str, channel: str, labels: Mapping[str, str], exercise: bool) -> str:
    values = ",".join(f"{k}={v}" for k, v in labels.items())
    if len(values) > MAX_LABELS:  # e.g. many communes: a key stays a key
        values = "sha256=" + hashlib.sha256(values.encode("utf-8")).hexdigest()
    return str(GroupKey(receiver_id, str(channel), exercise, values))


GROUP_ID = re.compile(r"grp-[0-9a-f]{16}")


def group_id(key: str) -> str:
    """A short, stable name for a group, for notification ids and logs."""
    return "grp-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def check_group_id(text: str) -> str:
    if GROUP_ID.fullmatch(text) is None:
        raise InvalidId("group id", text, "grp-<16 hex digits>")
    return text


# --- CAP -----------------------------------------------------------------------------

_TOKEN_SAFE = re.compile(r"[A-Za-z0-9._:-]")


def cap_token(text: str, extra: str = "") -> str:
    """``text`` made safe for a CAP identifier or sender.

    CAP forbids spaces, commas, ``<`` and ``&`` there (they separate the parts of
    ``references``). Anything outside ``[A-Za-z0-9._:-]`` (plus ``extra``) is
    percent-encoded as UTF-8, so distinct inputs stay distinct and the result is
    safe in a URL path as well."""
    out = []
    for ch in text:
        if _TOKEN_SAFE.fullmatch(ch) or ch in extra:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
    return "".join(out)


@dataclass(frozen=True, slots=True)
class CapIdentifier:
    """The CAP ``identifier`` of one warning state."""

    warning_id: str
    version: int

    FORMAT = "urn:canhbao:<warning>:v<version>"
    _RE = re.compile(r"urn:canhbao:(?P<w>[A-Za-z0-9._:%-]+):v(?P<n>[0-9]+)")

    def __str__(self) -> str:
        return cap_identifier(self.warning_id, self.version)

    @classmethod
    def parse(cls, text: str) -> CapIdentifier:
        m = cls._RE.fullmatch(text)
        if m is None:
            raise InvalidId("CAP identifier", text, cls.FORMAT)
        return cls(unquote(m["w"], errors="surrogatepass"), int(m["n"]))


def cap_identifier(warning: str, version: int) -> str:
    return f"urn:canhbao:{cap_token(warning)}:v{version}"
