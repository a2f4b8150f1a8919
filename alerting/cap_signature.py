"""XML signatures (XML-DSig) on CAP messages: signing what canhbao publishes, verifying
what upstream agencies send.

A signature is *enveloped*, as IPAWS and other national CAP services do it: one
``<ds:Signature>`` as the last child of ``<alert>`` (CAP 1.2's schema allows it there),
over the whole alert (``Reference URI=""``, enveloped-signature transform, exclusive
canonicalization), RSA-SHA256 or ECDSA-SHA256 by the key's type, with the signer's
certificate in ``<ds:KeyInfo>``. Any XML-DSig verifier checks it against the signer's
certificate (``xmlsec1 --verify``, signxml; README, "Signed CAP").

Trust is pinned, not chained: a CAP sender is trusted by the certificate(s) configured
for it (``config/cap_ingest.yaml``, ``senders:``), whatever a signature's ``KeyInfo``
claims, so a self-signed agency certificate works and a certificate from anyone else
does not. What a receiver acts on is what was signed (the element signxml returns),
never the document around it: a signature cannot be moved onto other content.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from lxml import etree
from signxml.algorithms import (
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureMethod,
)
from signxml.exceptions import InvalidInput, InvalidSignature
from signxml.signer import XMLSigner
from signxml.verifier import SignatureConfiguration, XMLVerifier

DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
SIGNATURE_TAG = f"{{{DSIG_NS}}}Signature"


class SigningError(ValueError):
    """A key or certificate that cannot sign: the message names the file and why."""


class SignatureError(ValueError):
    """A CAP message whose signature does not verify; the message says why."""


def _parser() -> etree.XMLParser:
    # CAP needs no DTD or entity: none is loaded, none is fetched (the ingest refuses a
    # DTD before this parser ever sees the document).
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SigningError(f"{what} {path}: cannot read: {exc.strerror}") from exc


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate of a PEM file (one, or several during a key rollover)."""
    try:
        certs = x509.load_pem_x509_certificates(_read(path, "certificate"))
    except ValueError as exc:
        raise SigningError(f"certificate {path}: not a PEM certificate: {exc}") from None
    return certs


def describe(cert: x509.Certificate) -> str:
    """Who a certificate names and until when, for logs (no secret in it)."""
    return (
        f"{cert.subject.rfc4514_string()} (serial {cert.serial_number:x}, valid until "
        f"{cert.not_valid_after_utc:%Y-%m-%d})"
    )


def _spki(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class CapSigner:
    """Signs CAP documents with one private key and the certificate that names it."""

    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def load(cls, key_path: Path, cert_path: Path, passphrase: bytes | None = None) -> CapSigner:
        """From PEM files: the private key (encrypted with ``passphrase`` if given) and
        its certificate (the first of the file). Refused, naming the file, when they do
        not belong together: a feed signed with a key no certificate names would fail
        at every partner."""
        data = _read(key_path, "signing key")
        try:
            key = serialization.load_pem_private_key(data, password=passphrase or None)
        except TypeError:
            # Encrypted without a passphrase given, or a passphrase for a plain key.
            raise SigningError(
                f"signing key {key_path}: "
                + (
                    "is encrypted: set CANHBAO_CAP_SIGNING_KEY_PASSPHRASE"
                    if not passphrase
                    else "is not encrypted, yet a passphrase is set"
                )
            ) from None
        except ValueError:
            # Never echo the library's message: it may quote key material.
            raise SigningError(
                f"signing key {key_path}: not a PEM private key, or a wrong passphrase"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise SigningError(f"signing key {key_path}: an RSA or EC key is needed")
        certs = load_certificates(cert_path)
        cert = certs[0]
        if _spki(cert.public_key()) != _spki(key.public_key()):
            raise SigningError(
                f"certificate {cert_path} does not name the key {key_path}: it is {describe(cert)}"
            )
        return cls(key, cert)

    @property
    def algorithm(self) -> SignatureMethod:
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            return SignatureMethod.ECDSA_SHA256
        return SignatureMethod.RSA_SHA256

    def expires_in(self, now: datetime | None = None) -> float:
        """Seconds until the certificate expires (negative once expired)."""
        return (self.certificate.not_valid_after_utc - (now or datetime.now(UTC))).total_seconds()

    def sign(self, document: str | bytes) -> bytes:
        """The CAP document with its enveloped signature, as UTF-8 XML bytes.

        The document is signed as it is: not re-indented afterwards, since any change
        to the signed content, whitespace included, breaks the signature."""
        raw = document.encode("utf-8") if isinstance(document, str) else document
        root = etree.fromstring(raw, parser=_parser())
        signer = XMLSigner(
            signature_algorithm=self.algorithm,
            digest_algorithm=DigestAlgorithm.SHA256,
            # Exclusive: the alert verifies the same once wrapped in EDXL-DE or an index.
            c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
        )
        signed = signer.sign(root, key=self.key, cert=[self.certificate])
        body: bytes = etree.tostring(signed, xml_declaration=True, encoding="UTF-8")
        return body + b"\n"


def is_signed(document: bytes) -> bool:
    """Whether the alert carries a signature of its own (a child ``ds:Signature``)."""
    try:
        root = etree.fromstring(document, parser=_parser())
    except etree.XMLSyntaxError:
        return False
    return root.find(SIGNATURE_TAG) is not None


CAP_NAMESPACES = frozenset(
    {"urn:oasis:names:tc:emergency:cap:1.2", "urn:oasis:names:tc:emergency:cap:1.1"}
)


def alert_parts(document: bytes) -> list[bytes]:
    """The XML of every CAP alert in a document (itself, or those an EDXL-DE or an index
    carries), in document order, with their namespace prefixes as written: a signed
    alert taken out of its envelope still verifies."""
    try:
        root = etree.fromstring(document, parser=_parser())
    except etree.XMLSyntaxError:
        return []
    parts = []
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue  # comments, processing instructions
        qname = etree.QName(el)
        if qname.localname == "alert" and qname.namespace in CAP_NAMESPACES:
            parts.append(etree.tostring(el, encoding="UTF-8", with_tail=False))
    return parts


def verify(
    document: bytes, certificates: Sequence[x509.Certificate], now: datetime | None = None
) -> bytes:
    """The alert as signed (XML bytes, without its signature) when ``document`` carries
    a valid enveloped signature over its whole root by one of ``certificates``; else
    ``SignatureError`` with the reason (none, a bad one, another signer, expired).

    ``now`` is when certificates must be valid (default: now); SHA-1 is refused."""
    if not certificates:
        raise SignatureError("no certificate to verify against")
    try:
        root = etree.fromstring(document, parser=_parser())
    except etree.XMLSyntaxError as exc:
        raise SignatureError(f"not well-formed XML: {exc}") from None
    if root.find(SIGNATURE_TAG) is None:
        raise SignatureError("not signed, and the sender's signature is required")
    config = SignatureConfiguration(location="./", expect_references=1, verification_time=now)
    reasons: list[str] = []
    for cert in certificates:
        try:
            result = XMLVerifier().verify(root, x509_cert=cert, expect_config=config)
        except (InvalidSignature, InvalidInput) as exc:
            reasons.append(str(exc) or type(exc).__name__)
            continue
        except etree.DocumentInvalid as exc:
            # signxml checks the <Signature> against the XML-DSig schema and lets lxml's
            # error out: a real signer (Canada's NAAD) writes Id="NAADS Signature".
            reasons.append(f"the signature is not valid XML-DSig: {exc}")
            continue
        assert not isinstance(result, list)  # expect_references=1
        signed = result.signed_xml
        # URI="" must be the whole alert, not some part of it chosen by an attacker.
        if signed is None or signed.tag != root.tag:
            raise SignatureError("the signature does not cover the whole alert")
        out: bytes = etree.tostring(signed, encoding="UTF-8")
        return out
    raise SignatureError(f"bad signature: {'; '.join(dict.fromkeys(reasons))}")


@dataclass(frozen=True)
class SenderTrust:
    """The certificates one CAP sender signs with, and whether its alerts must be signed
    (``required: false`` while a sender starts signing: a signed alert is still
    verified, an unsigned one passes)."""

    certificates: tuple[x509.Certificate, ...]
    required: bool = True


@dataclass(frozen=True)
class Trust:
    """Per CAP ``<sender>``, how its alerts are verified. Senders not listed are not
    checked."""

    senders: dict[str, SenderTrust] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.senders)

    def check(self, sender: str, document: bytes, now: datetime | None = None) -> bytes | None:
        """The signed alert to act on (``verify``) when ``sender`` is configured and its
        alert is signed, or must be; None when nothing is to be checked. Raises
        ``SignatureError``."""
        trust = self.senders.get(sender)
        if trust is None:
            return None
        if not trust.required and not is_signed(document):
            return None
        return verify(document, trust.certificates, now)


def certificates_of(paths: Iterable[Path]) -> tuple[x509.Certificate, ...]:
    return tuple(cert for path in paths for cert in load_certificates(path))
