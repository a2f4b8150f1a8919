"""Keys and certificates for the XML-signature tests, made at run time (no private key
is committed): a self-signed certificate per signer, as an agency that signs its CAP
feed gives its partners."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class SigningKeys:
    key_path: Path
    cert_path: Path
    certificate: x509.Certificate
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def make_signer(
    where: Path,
    name: str = "canhbao.bacninh.gov.vn",
    *,
    passphrase: bytes | None = None,
    kind: str = "rsa",
    valid_days: int = 365,
    now: datetime | None = None,
) -> SigningKeys:
    """A key (PEM, encrypted with ``passphrase`` if given) and its self-signed
    certificate, written under ``where`` as ``<name>.key`` and ``<name>.pem``."""
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = (now or datetime.now(UTC)) - timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=1 + valid_days))
        .sign(key, hashes.SHA256())
    )
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    where.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = where / f"{name}.key", where / f"{name}.pem"
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return SigningKeys(key_path, cert_path, cert, key)
