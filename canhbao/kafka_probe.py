"""A dependency-free readiness probe: does a Kafka broker answer ApiVersions?

A TCP connect alone is not enough (the JVM opens the port before the broker
can serve requests); an ApiVersions round trip proves the broker is up.
"""

from __future__ import annotations

import socket
import struct
import time


def api_versions_ok(host: str, port: int, timeout: float = 1.0) -> bool:
    client_id = b"canhbao-probe"
    # ApiVersions (key 18) v0: the one request every broker version accepts.
    body = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _recv_exact(sock, 4)
            (size,) = struct.unpack(">i", header)
            payload = _recv_exact(sock, size)
    except OSError:
        return False
    if len(payload) < 6:
        return False
    correlation_id, error_code = struct.unpack(">ih", payload[:6])
    return bool(correlation_id == 7 and error_code == 0)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        chunks += chunk
    return bytes(chunks)


def wait_for_broker(bootstrap: str, timeout: float = 60.0) -> None:
    """Block until the first bootstrap server answers, or raise TimeoutError."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if api_versions_ok(host or "127.0.0.1", int(port)):
            return
        time.sleep(0.1)
    raise TimeoutError(f"no Kafka broker answered at {bootstrap} within {timeout:.0f} s")


if __name__ == "__main__":  # used by infra/ scripts: python -m canhbao.kafka_probe HOST:PORT
    import sys

    try:
        wait_for_broker(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 60.0)
    except TimeoutError as exc:
        print(exc, file=sys.stderr)
        sys.exit(1)
