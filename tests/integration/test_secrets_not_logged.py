"""A full ``canhbao demo`` with every secret setting set in the environment to a value
found nowhere else: no log line, no output and no file the demo wrote holds one.

The secrets are read from :class:`Settings` itself (every ``SecretStr`` field, and
every file setting whose name says it holds a password or a private key), so a secret
setting added later is covered without touching this test. Embedded broker only: the
demo starts its own, and what is checked is canhbao's output, not the broker's."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import SecretStr

from canhbao.settings import Settings
from tests import servers
from tests.kafka_tls import make_tls

pytestmark = pytest.mark.integration

#: Settings named like secrets that hold none: files of SHA-256 hashes only.
NOT_SECRET = {
    "api_keys_path": "holds the ingest API keys' SHA-256 hashes, never a key",
    "record_api_tokens_path": "holds the record API tokens' SHA-256 hashes, never a token",
}
SECRET_WORDS = ("password", "passphrase", "token", "secret", "key")


def _is_secret_str(annotation: object) -> bool:
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


def secret_settings() -> tuple[list[str], list[str]]:
    """(SecretStr settings, secret-file settings) of :class:`Settings`."""
    values, files = [], []
    for name, info in Settings.model_fields.items():
        if _is_secret_str(info.annotation):
            values.append(name)
        elif any(word in name for word in SECRET_WORDS) and name not in NOT_SECRET:
            files.append(name)
    return values, files


def test_every_setting_named_as_a_secret_is_a_secretstr_or_a_secret_file() -> None:
    values, files = secret_settings()
    # The list is not kept by hand: it grows with Settings. These must be among it.
    assert {"webhook_secret", "database_url", "kafka_sasl_password"} <= set(values)
    assert {"cap_signing_key", "kafka_sasl_password_file", "kafka_ssl_key_file"} <= set(files)
    for name in files:
        annotation = Settings.model_fields[name].annotation
        assert Path in typing.get_args(annotation) or annotation is Path, (
            f"{name}: named like a secret but neither a SecretStr nor a file: make it a "
            "SecretStr, or say in NOT_SECRET why it holds none"
        )


@pytest.mark.server("postgresql")  # the record's URL then holds a real password
def test_a_demo_with_every_secret_set_shows_none_of_them(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    kinds = [k.strip() for k in str(request.config.getoption("broker")).split(",")]
    if "tansu" not in kinds:
        pytest.skip("runs with the demo's own embedded broker (--broker tansu)")
    values, files = secret_settings()
    shown: dict[str, str] = {}  # what must never be seen → the setting it came from
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANHBAO_")}
    run_dir = tmp_path / "run"  # everything the demo writes: its cwd and TMPDIR
    (run_dir / "tmp").mkdir(parents=True)
    for name in values:
        value = f"s3cr3t{name.replace('_', '')}{secrets.token_hex(6)}"
        if name == "database_url":
            # A working URL (the demo records into it) whose password must not show:
            # filled in below, once the PostgreSQL cluster runs (it trusts local users).
            env["CANHBAO_DATABASE_URL"] = value
        else:
            env[f"CANHBAO_{name.upper()}"] = value
        shown[value] = name
    private = tmp_path / "private"  # outside what is searched: the files themselves
    tls = make_tls(private / "tls")
    key_lines = [
        line for line in tls.key.read_text().splitlines() if line and not line.startswith("-----")
    ]
    for name in files:
        if "key" in name:  # a PEM private key (with its certificate where one goes)
            env[f"CANHBAO_{name.upper()}"] = str(tls.key)
            cert = name.replace("_key_file", "_cert_file").replace("_key", "_cert")
            if cert in Settings.model_fields:
                env[f"CANHBAO_{cert.upper()}"] = str(tls.cert)
            for line in key_lines:
                shown[line] = name
        else:  # a file holding a password
            value = f"s3cr3tfile{name.replace('_', '')}{secrets.token_hex(6)}"
            path = private / name
            path.write_text(value + "\n")
            env[f"CANHBAO_{name.upper()}"] = str(path)
            shown[value] = name
    env |= {
        "TMPDIR": str(run_dir / "tmp"),
        "CANHBAO_DATA_DIR": str(run_dir / "data"),
        "CANHBAO_LOG_LEVEL": "debug",  # the most a log could say
    }
    with servers.postgresql() as url:
        user, at, where = url.partition("@")
        env["CANHBAO_DATABASE_URL"] = f"{user}:{env['CANHBAO_DATABASE_URL']}{at}{where}"
        run = subprocess.run(
            [sys.executable, "-m", "canhbao", "demo", "--duration", "30", "--json"],
            env=env, cwd=run_dir, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)
    assert summary["warnings"]["total"] > 0 and summary["deliveries"]["ok"] > 0
    written = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any(p.name == "worker.log" for p in written), "the demo's logs were not found"

    outputs = {"stdout": run.stdout, "stderr": run.stderr}
    for p in written:
        outputs[str(p.relative_to(run_dir))] = p.read_bytes().decode(errors="replace")
    leaks = [
        f"{where}: the {setting} setting's value"
        for where, text in outputs.items()
        for secret, setting in shown.items()
        if secret in text
    ]
    assert leaks == []
