"""HMAC-SHA256 signatures for webhook deliveries.

The signature covers the timestamp and the body (``"{ts}.{body}"``), so a
receiver can check both who sent it and that it is not an old replay.
"""

from __future__ import annotations

import hashlib
import hmac
import time

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
