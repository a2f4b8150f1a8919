"""HMAC webhook signatures (consumers.signing)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from consumers.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    headers,
    sign,
    verify,
    webhook_refusal,
)

SECRET = b"s3cret-key"
BODY = b'{"type": "canhbao.warning", "warning": {"level": 2}}'
NOW = 1_759_770_000.0


def _signed(body: bytes = BODY, secret: bytes = SECRET, now: float = NOW) -> tuple[str, str]:
    h = headers(secret, body, now=now)
    return h[TIMESTAMP_HEADER], h[SIGNATURE_HEADER]


def test_headers_then_verify_round_trip() -> None:
    ts, sig = _signed()
    assert ts == "1759770000"
    assert sig.startswith("sha256=") and len(sig) == len("sha256=") + 64
    assert verify(SECRET, ts, sig, BODY, now=NOW)


def test_verify_accepts_within_tolerance() -> None:
    ts, sig = _signed()
    assert verify(SECRET, ts, sig, BODY, now=NOW + 299)
    assert verify(SECRET, ts, sig, BODY, now=NOW - 299)  # a receiver clock slightly behind


def test_signature_is_deterministic_and_covers_timestamp() -> None:
    assert sign(SECRET, "1", BODY) == sign(SECRET, "1", BODY)
    assert sign(SECRET, "1", BODY) != sign(SECRET, "2", BODY)


@pytest.mark.parametrize(
    "tampered",
    [BODY.replace(b"2", b"3"), BODY + b" ", b"", BODY[:-1]],
    ids=["changed", "appended", "empty", "truncated"],
)
def test_tampered_body_fails(tampered: bytes) -> None:
    ts, sig = _signed()
    assert not verify(SECRET, ts, sig, tampered, now=NOW)


def test_wrong_secret_fails() -> None:
    ts, sig = _signed()
    assert not verify(b"other-key", ts, sig, BODY, now=NOW)


def test_changed_timestamp_with_old_signature_fails() -> None:
    _ts, sig = _signed()
    newer = str(int(NOW) + 10)
    assert not verify(SECRET, newer, sig, BODY, now=NOW + 10)


def test_timestamp_older_than_tolerance_fails() -> None:
    ts, sig = _signed()
    assert not verify(SECRET, ts, sig, BODY, now=NOW + 301)
    assert not verify(SECRET, ts, sig, BODY, now=NOW + 61, tolerance=60)
    assert verify(SECRET, ts, sig, BODY, now=NOW + 59, tolerance=60)


def test_timestamp_far_in_future_fails() -> None:
    ts, sig = _signed(now=NOW + 3600)
    assert not verify(SECRET, ts, sig, BODY, now=NOW)


@pytest.mark.parametrize("ts", ["", "abc", "1759770000.5", "0x68e4"])
def test_non_numeric_timestamp_fails(ts: str) -> None:
    sig = sign(SECRET, ts, BODY)  # correctly signed: only the timestamp is wrong
    assert not verify(SECRET, ts, sig, BODY, now=NOW)


def test_malformed_signature_fails() -> None:
    ts, sig = _signed()
    assert not verify(SECRET, ts, "", BODY, now=NOW)
    assert not verify(SECRET, ts, sig.removeprefix("sha256="), BODY, now=NOW)
    assert not verify(SECRET, ts, sig.upper(), BODY, now=NOW)


def test_no_secret_no_headers() -> None:
    assert headers(None, BODY, now=NOW) == {}


def test_headers_use_current_time_by_default() -> None:
    import time

    before = int(time.time())
    h = headers(SECRET, BODY)
    assert before <= int(h[TIMESTAMP_HEADER]) <= int(time.time())
    assert verify(SECRET, h[TIMESTAMP_HEADER], h[SIGNATURE_HEADER], BODY)


@pytest.mark.parametrize(
    ("ts", "sig"),
    [
        ("١٧٥٩٧٧٠٠٠٠", "sha256=00"),  # Arabic-Indic digits: int() accepts them
        ("1759770000", "sha256=é"),  # non-ASCII signature header
    ],
    ids=["non-ascii-digits-timestamp", "non-ascii-signature"],
)
def test_non_ascii_headers_are_rejected_not_raised(ts: str, sig: str) -> None:
    assert verify(SECRET, ts, sig, BODY, now=NOW) is False


# --- The verifier receivers copy (README, "Delivery guarantee") -----------------------------


def _readme_verifier() -> tuple[str, Any]:
    """The README's Python block that defines ``webhook_refusal``, and that function."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    (block,) = [b for b in blocks if "def webhook_refusal(" in b]
    namespace: dict[str, Any] = {}
    exec(compile(block, "README.md", "exec"), namespace)
    return block, namespace["webhook_refusal"]


def test_the_readme_carries_the_verifier_as_it_is_in_the_code() -> None:
    block, _ = _readme_verifier()
    assert inspect.getsource(webhook_refusal) in block


@pytest.mark.parametrize("where", ["module", "readme copy"])
def test_the_copied_verifier_accepts_a_fresh_request_and_refuses_stale_or_altered(
    where: str,
) -> None:
    check = webhook_refusal if where == "module" else _readme_verifier()[1]
    sent = headers(SECRET, BODY, now=NOW)
    assert check(SECRET, sent, BODY, now=NOW + 5) is None
    lower = {k.lower(): v for k, v in sent.items()}  # as some frameworks give headers
    assert check(SECRET, lower, BODY, now=NOW) is None
    stale = check(SECRET, sent, BODY, now=NOW + 301)
    assert stale is not None and stale.startswith("stale: signed 301 s ago")
    ahead = check(SECRET, sent, BODY, now=NOW - 600)
    assert ahead is not None and "600 s ahead" in ahead
    altered = check(SECRET, sent, BODY.replace(b"2", b"3"), now=NOW)
    assert altered is not None and altered.startswith("bad signature")
    assert check(b"another", sent, BODY, now=NOW) is not None
    replayed_later = dict(sent, **{TIMESTAMP_HEADER: str(int(NOW) + 60)})
    assert (check(SECRET, replayed_later, BODY, now=NOW + 60) or "").startswith("bad signature")
    assert (check(SECRET, {}, BODY, now=NOW) or "").startswith("unsigned")
    odd = {TIMESTAMP_HEADER: "١٧٥٩٧٧٠٠٠٠", SIGNATURE_HEADER: sent[SIGNATURE_HEADER]}
    assert check(SECRET, odd, BODY, now=NOW) == "malformed signature headers"
