"""Signed CAP (alerting.cap_signature, the CAP feed): what canhbao publishes verifies
with standard XML-DSig verifiers against its certificate, and fails once altered."""

from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from lxml import etree
from signxml.exceptions import InvalidSignature
from signxml.verifier import XMLVerifier

from alerting.cap import CAP_NS, alert_identifier
from alerting.cap_signature import (
    DSIG_NS,
    CapSigner,
    SenderTrust,
    SignatureError,
    SigningError,
    Trust,
    verify,
)
from alerting.directory import Directory
from canhbao.cli import cap_signer
from canhbao.settings import Settings
from consumers.cap_feed import CapFeedStore, log_signing, make_app
from tests import servers
from tests.cap_keys import SigningKeys, make_signer
from tests.unit.test_cap_feed import BASE, T0, Clock, assert_valid_cap, make_warning

CAP = {"cap": CAP_NS}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> SigningKeys:
    return make_signer(tmp_path_factory.mktemp("keys"), passphrase=b"mat-khau dai")


@pytest.fixture(scope="module")
def signer(keys: SigningKeys) -> CapSigner:
    return CapSigner.load(keys.key_path, keys.cert_path, b"mat-khau dai")


@pytest.fixture
async def served(
    directory: Directory, signer: CapSigner
) -> AsyncIterator[tuple[TestClient[Any, Any], str]]:
    store = CapFeedStore(clock=Clock(T0))
    warning = make_warning(directory, level=2)
    store.apply(warning)
    async with TestClient(TestServer(make_app(store, directory, BASE, signer=signer))) as c:
        yield c, f"/cap/alerts/{alert_identifier(warning)}.xml"


def unsigned(signed: bytes) -> bytes:
    root = etree.fromstring(signed)
    root.remove(root[-1])
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out


def altered_headline(signed: bytes) -> bytes:
    root = etree.fromstring(signed)
    headline = root.find("cap:info/cap:headline", CAP)
    headline.text = "Hủy cảnh báo: không có lũ"  # what someone silencing a warning writes
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out


async def test_the_feed_serves_each_alert_signed_and_it_verifies(
    served: tuple[TestClient[Any, Any], str], keys: SigningKeys
) -> None:
    client, path = served
    resp = await client.get(path)
    assert resp.status == 200
    body = await resp.read()
    root = assert_valid_cap(body)  # the signature is where CAP 1.2's schema allows it
    assert root[-1].tag == f"{{{DSIG_NS}}}Signature"
    result = XMLVerifier().verify(body, x509_cert=keys.certificate)
    assert not isinstance(result, list)
    signed = result.signed_xml
    assert signed is not None and signed.tag == f"{{{CAP_NS}}}alert"
    # Everything a receiver reads is covered, in every language.
    assert len(signed.findall("cap:info", CAP)) == 3
    assert signed.findtext("cap:identifier", namespaces=CAP) in path
    assert (await (await client.get(path)).read()) == body  # one message, one signature


async def test_an_altered_alert_fails_verification(
    served: tuple[TestClient[Any, Any], str], keys: SigningKeys
) -> None:
    client, path = served
    body = await (await client.get(path)).read()
    with pytest.raises(InvalidSignature):
        XMLVerifier().verify(altered_headline(body), x509_cert=keys.certificate)
    with pytest.raises(SignatureError, match="bad signature"):
        verify(altered_headline(body), [keys.certificate])


async def test_another_signer_fails_verification(
    served: tuple[TestClient[Any, Any], str], tmp_path: Path, keys: SigningKeys
) -> None:
    client, path = served
    body = await (await client.get(path)).read()
    impostor = make_signer(tmp_path, "impostor")
    forged = CapSigner.load(impostor.key_path, impostor.cert_path).sign(
        unsigned(altered_headline(body))
    )
    with pytest.raises(SignatureError):
        verify(forged, [keys.certificate])  # it verifies with its own certificate only
    assert verify(forged, [impostor.certificate])


def test_an_ec_key_signs_with_ecdsa(tmp_path: Path, directory: Directory) -> None:
    ec_keys = make_signer(tmp_path, kind="ec")
    signer = CapSigner.load(ec_keys.key_path, ec_keys.cert_path)
    from alerting.cap import cap_xml

    signed = signer.sign(cap_xml(make_warning(directory), directory))
    assert b"ecdsa-sha256" in signed
    assert b"<info>" in verify(signed, [ec_keys.certificate])


@pytest.mark.parametrize("variant", ["pubkey-cert", "trusted-cert"])
async def test_xmlsec1_verifies_what_the_feed_serves(
    served: tuple[TestClient[Any, Any], str], keys: SigningKeys, tmp_path: Path, variant: str
) -> None:
    """The README's command for partners, as they run it (Debian's xmlsec1)."""
    xmlsec1 = servers.require("xmlsec1")
    client, path = served
    body = await (await client.get(path)).read()
    option = "--pubkey-cert-pem" if variant == "pubkey-cert" else "--trusted-pem"

    def check(document: bytes, cert: Path = keys.cert_path) -> subprocess.CompletedProcess[str]:
        (tmp_path / "alert.xml").write_bytes(document)
        return subprocess.run(
            [xmlsec1, "--verify", option, str(cert), str(tmp_path / "alert.xml")],
            capture_output=True,
            text=True,
            timeout=30,
        )

    good = check(body)
    assert good.returncode == 0, good.stderr
    assert "OK" in good.stdout + good.stderr
    bad = check(altered_headline(body))
    assert bad.returncode != 0
    assert "FAIL" in bad.stdout + bad.stderr
    other = make_signer(tmp_path / "other", "other")
    assert check(body, other.cert_path).returncode != 0  # pinned: another cert fails


async def test_without_a_signer_the_feed_is_unsigned_and_says_so(
    directory: Directory, caplog: pytest.LogCaptureFixture
) -> None:
    store = CapFeedStore(clock=Clock(T0))
    warning = make_warning(directory)
    store.apply(warning)
    async with TestClient(TestServer(make_app(store, directory, BASE))) as client:
        body = await (await client.get(f"/cap/alerts/{alert_identifier(warning)}.xml")).read()
    assert DSIG_NS.encode() not in body
    with caplog.at_level(logging.INFO):
        log_signing(None)
    assert "UNSIGNED" in caplog.text and "CANHBAO_CAP_SIGNING_KEY" in caplog.text


def test_at_start_the_feed_names_its_certificate_and_warns_before_expiry(
    signer: CapSigner, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        log_signing(signer)
    assert "signed (XML-DSig RSA_SHA256) by CN=canhbao.bacninh.gov.vn" in caplog.text
    assert "expire" not in caplog.text.lower().replace("valid until", "")
    caplog.clear()
    soon = make_signer(tmp_path, "soon", valid_days=10)
    with caplog.at_level(logging.INFO):
        log_signing(CapSigner.load(soon.key_path, soon.cert_path))
    assert re.search(r"certificate expires in (9|10) days; partners refuse", caplog.text)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        log_signing(signer, now=datetime.now(UTC) + timedelta(days=400))
    assert "has EXPIRED" in caplog.text


# --- Keys and certificates from files -------------------------------------------------------


def test_an_encrypted_key_needs_its_passphrase(keys: SigningKeys) -> None:
    with pytest.raises(SigningError, match="is encrypted: set CANHBAO_CAP_SIGNING_KEY_PASS"):
        CapSigner.load(keys.key_path, keys.cert_path)
    with pytest.raises(SigningError, match="wrong passphrase") as info:
        CapSigner.load(keys.key_path, keys.cert_path, b"not-it-123")
    assert "not-it-123" not in str(info.value)


def test_a_certificate_of_another_key_is_refused(keys: SigningKeys, tmp_path: Path) -> None:
    other = make_signer(tmp_path, "other")
    with pytest.raises(SigningError, match="does not name the key") as info:
        CapSigner.load(keys.key_path, other.cert_path, b"mat-khau dai")
    assert "CN=other" in str(info.value)


def test_unreadable_files_are_named(keys: SigningKeys, tmp_path: Path) -> None:
    with pytest.raises(SigningError, match=r"signing key .*missing\.key: cannot read"):
        CapSigner.load(tmp_path / "missing.key", keys.cert_path)
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(SigningError, match=r"certificate .*junk\.pem: not a PEM certificate"):
        CapSigner.load(keys.key_path, tmp_path / "junk.pem", b"mat-khau dai")


def test_settings_give_both_files_and_the_passphrase_stays_secret(
    keys: SigningKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("KEY", "CERT", "KEY_PASSPHRASE"):
        monkeypatch.delenv(f"CANHBAO_CAP_SIGNING_{name}", raising=False)
    assert cap_signer(Settings(_env_file=None)) is None  # type: ignore[call-arg]
    monkeypatch.setenv("CANHBAO_CAP_SIGNING_KEY", str(keys.key_path))
    with pytest.raises(SigningError, match="only the key is set"):
        cap_signer(Settings(_env_file=None))  # type: ignore[call-arg]
    monkeypatch.setenv("CANHBAO_CAP_SIGNING_CERT", str(keys.cert_path))
    monkeypatch.setenv("CANHBAO_CAP_SIGNING_KEY_PASSPHRASE", "mat-khau dai")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert "mat-khau" not in repr(settings) and "mat-khau" not in str(settings.model_dump())
    signer = cap_signer(settings)
    assert signer is not None and signer.certificate == keys.certificate


# --- Verifying -------------------------------------------------------------------------------


def test_verify_returns_what_was_signed_not_what_surrounds_it(
    signer: CapSigner, keys: SigningKeys, directory: Directory
) -> None:
    from alerting.cap import cap_xml

    signed = signer.sign(cap_xml(make_warning(directory), directory))
    out = verify(signed, [keys.certificate])
    assert DSIG_NS.encode() not in out  # the signature itself is not content
    assert etree.fromstring(out).findtext("cap:identifier", namespaces=CAP)
    with pytest.raises(SignatureError, match="not signed"):
        verify(cap_xml(make_warning(directory), directory).encode(), [keys.certificate])


def test_trust_checks_configured_senders_only(
    signer: CapSigner, keys: SigningKeys, directory: Directory
) -> None:
    from alerting.cap import cap_xml

    plain = cap_xml(make_warning(directory), directory).encode()
    signed = signer.sign(plain)
    trust = Trust(
        {
            "strict": SenderTrust((keys.certificate,)),
            "rolling-out": SenderTrust((keys.certificate,), required=False),
        }
    )
    assert trust.check("someone-else", plain) is None
    assert trust.check("rolling-out", plain) is None  # unsigned passes while not required
    assert trust.check("strict", signed) is not None
    with pytest.raises(SignatureError, match="not signed"):
        trust.check("strict", plain)
    with pytest.raises(SignatureError, match="bad signature"):
        trust.check("rolling-out", altered_headline(signed))  # signed: always checked


def test_the_readme_python_check_for_partners_runs_as_written(
    signer: CapSigner,
    keys: SigningKeys,
    directory: Directory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from alerting.cap import cap_xml

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    (snippet,) = [b for b in blocks if "XMLVerifier" in b]
    body = signer.sign(cap_xml(make_warning(directory), directory))
    (tmp_path / "canhbao-cap.pem").write_bytes(keys.cert_path.read_bytes())
    monkeypatch.chdir(tmp_path)
    (tmp_path / "alert.xml").write_bytes(body)
    namespace: dict[str, Any] = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    assert namespace["signed_alert"].tag == f"{{{CAP_NS}}}alert"
    (tmp_path / "alert.xml").write_bytes(altered_headline(body))
    with pytest.raises(InvalidSignature):
        exec(compile(snippet, "README.md", "exec"), {})


def test_cap_feed_refuses_to_start_with_a_wrong_key_naming_the_file(
    keys: SigningKeys, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from canhbao.cli import main

    monkeypatch.setenv("CANHBAO_CAP_SIGNING_KEY", str(keys.key_path))
    monkeypatch.setenv("CANHBAO_CAP_SIGNING_CERT", str(keys.cert_path))
    monkeypatch.setenv("CANHBAO_CAP_SIGNING_KEY_PASSPHRASE", "sai-mat-khau-42")
    assert main(["cap-feed", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert f"signing key {keys.key_path}" in err and "wrong passphrase" in err
    assert "sai-mat-khau-42" not in err
