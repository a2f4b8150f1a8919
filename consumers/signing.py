"""HMAC-SHA256 signatures for webhook deliveries.

The signature covers the timestamp and the body (``"{ts}.{body}"``), so a
receiver can check both who sent it and that it is not an old replay.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

TIMESTAMP_HEADER = "X-Canhbao-Timestamp"
SIGNATURE_HEADER = "X-Canhbao-Signature"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def headers(secret: bytes | None, body: bytes, now: float | None = None) -> dict[str, str]:
    if secret is None:
        return {}
    ts = str(int(now if now is not None else time.time()))
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: sign(secret, ts, body)}


def verify(
    secret: bytes,
    timestamp: str,
    signature: str,
    body: bytes,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    # Headers come from the network: anything but plain ASCII digits is a reject,
    # never an exception (int() alone would accept other scripts' digits).
    if not (timestamp.isascii() and timestamp.isdigit() and signature.isascii()):
        return False
    age = abs((now if now is not None else time.time()) - int(timestamp))
    if age > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


# --- For receivers ------------------------------------------------------------------------
# The function below is what an agency's receiver copies (README, "Delivery guarantee"):
# the standard library only, the header names spelled out, any header mapping (aiohttp,
# Flask, Django, a plain dict with lower-case names). tests/unit/test_signing.py checks
# that the README's copy is this very function, so the two cannot drift apart.


def webhook_refusal(
    secret: bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> str | None:
    """Why a webhook request is not canhbao's, as sent, just now; None when it is.

    ``body`` is the raw request body, before any JSON parsing."""
    import hashlib
    import hmac
    import time

    found = {k.lower(): v for k, v in headers.items()}
    ts = found.get("x-canhbao-timestamp", "")
    sig = found.get("x-canhbao-signature", "")
    if not ts or not sig:
        return "unsigned: no X-Canhbao-Timestamp or X-Canhbao-Signature header"
    if not (ts.isascii() and ts.isdigit() and sig.isascii()):
        return "malformed signature headers"
    age = (time.time() if now is None else now) - int(ts)
    if abs(age) > tolerance:
        when = f"{abs(age):.0f} s {'ago' if age > 0 else 'ahead'}"
        return f"stale: signed {when}, beyond {tolerance:.0f} s (a replay, or a wrong clock)"
    mac = hmac.new(secret, ts.encode("ascii") + b"." + body, hashlib.sha256)
    if not hmac.compare_digest("sha256=" + mac.hexdigest(), sig):
        return "bad signature: the body or timestamp was altered, or another secret signed it"
    return None
