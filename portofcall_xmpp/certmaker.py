"""
Certificates made with C{cryptography} (EC P-256 keys, so fast): a CA and
the server certificates it issues, written as PEM files where a server
(Prosody) and a client (C{--ca-file}) read them.

Used by C{--demo} (L{demo}: a CA of its own, trusted by this service only)
and by the tests' certificates (tests/support/certs.py).  Nothing here is
meant for a real server: the keys are unencrypted files.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

ID_ON_XMPPADDR = ObjectIdentifier("1.3.6.1.5.5.7.8.5")
ID_ON_DNS_SRV = ObjectIdentifier("1.3.6.1.5.5.7.8.7")

DAY = datetime.timedelta(days=1)
# serverAuth for c2s; clientAuth too, as servers reuse their certificate for
# outgoing s2s connections.
SERVER_EKU = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)


def _der_string(tag: int, text: str, encoding: str) -> bytes:
    """DER of a primitive string (UTF8String 0x0C, IA5String 0x16)."""
    body = text.encode(encoding)
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(octets)]) + octets
    return bytes([tag]) + length + body


def xmpp_addr(jid: str) -> x509.OtherName:
    """An id-on-xmppAddr otherName (RFC 6120 §13.7.1.4): a UTF8String."""
    return x509.OtherName(ID_ON_XMPPADDR, _der_string(0x0C, jid, "utf-8"))


def srv_name(name: str) -> x509.OtherName:
    """An id-on-dnsSRV otherName (RFC 4985): an IA5String like C{_xmpp-client.example}."""
    return x509.OtherName(ID_ON_DNS_SRV, _der_string(0x16, name, "ascii"))


@attrs.frozen
class Issued:
    """
    One certificate, its key, and the files it was written to.

    @ivar chain: the intermediates a server sends after the leaf (empty for
        a self-signed certificate or one issued by a root directly).
    """

    kind: str
    cert: x509.Certificate
    key: object
    chain: tuple[x509.Certificate, ...]
    directory: Path

    @property
    def cert_path(self) -> Path:
        return self.directory / "cert.pem"

    @property
    def key_path(self) -> Path:
        return self.directory / "privkey.pem"

    @property
    def chain_path(self) -> Path:
        return self.directory / "chain.pem"

    @property
    def fullchain_path(self) -> Path:
        return self.directory / "fullchain.pem"

    @property
    def combined_path(self) -> Path:
        return self.directory / "combined.pem"

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def cert_pem(self) -> bytes:
        return pem(self.cert)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def fullchain_pem(self) -> bytes:
        return b"".join(pem(c) for c in (self.cert, *self.chain))


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def name(common_name: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


class Maker:
    """
    Issues certificates into C{directory}, valid relative to C{now}, with
    subjects naming C{organization}.
    """

    def __init__(self, directory: Path, now: datetime.datetime, organization: str) -> None:
        self.directory = directory
        self.now = now
        self.organization = organization
        self._serial = 1000

    def serial(self) -> int:
        self._serial += 1
        return self._serial

    def build(
        self,
        *,
        subject: x509.Name,
        key,
        issuer: Issued | None,
        not_before: datetime.datetime,
        not_after: datetime.datetime,
        ca: bool,
        path_length: int | None = None,
        sans: list[x509.GeneralName] | None = None,
        hash_algorithm: hashes.HashAlgorithm | None = None,
        eku: tuple[ObjectIdentifier, ...] = SERVER_EKU,
    ) -> x509.Certificate:
        issuer_name = issuer.cert.subject if issuer else subject
        signing_key = issuer.key if issuer else key
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(self.serial())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
        )
        if issuer is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                critical=False,
            )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        else:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            ).add_extension(
                x509.ExtendedKeyUsage(list(eku)),
                critical=False,
            )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        if isinstance(signing_key, ed25519.Ed25519PrivateKey):
            algorithm = None
        else:
            algorithm = hash_algorithm or hashes.SHA256()
        return builder.sign(signing_key, algorithm)

    def write(self, kind: str, cert, key, chain) -> Issued:
        issued = Issued(kind, cert, key, tuple(chain), self.directory / kind)
        issued.directory.mkdir(parents=True, exist_ok=True)
        issued.cert_path.write_bytes(issued.cert_pem)
        issued.key_path.write_bytes(issued.key_pem)
        issued.key_path.chmod(0o600)
        issued.chain_path.write_bytes(b"".join(pem(c) for c in issued.chain))
        issued.fullchain_path.write_bytes(issued.fullchain_pem)
        issued.combined_path.write_bytes(issued.key_pem + issued.fullchain_pem)
        issued.combined_path.chmod(0o600)
        return issued

    def ca(self, kind: str, common_name: str, issuer: Issued | None = None) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self.build(
            subject=name(common_name, self.organization),
            key=key,
            issuer=issuer,
            not_before=self.now - 400 * DAY,
            not_after=self.now + 3650 * DAY,
            ca=True,
            path_length=None if issuer is None else 0,
        )
        return self.write(kind, cert, key, ())

    def leaf(
        self,
        kind: str,
        sans: list[x509.GeneralName] | None,
        *,
        issuer: Issued | None,
        chain: tuple[Issued, ...] = (),
        common_name: str = "localhost",
        valid: tuple[datetime.timedelta, datetime.timedelta] = (-DAY, 365 * DAY),
        key=None,
        hash_algorithm: hashes.HashAlgorithm | None = None,
        eku: tuple[ObjectIdentifier, ...] = SERVER_EKU,
    ) -> Issued:
        key = key or ec.generate_private_key(ec.SECP256R1())
        cert = self.build(
            subject=name(common_name, self.organization),
            key=key,
            issuer=issuer,
            not_before=self.now + valid[0],
            not_after=self.now + valid[1],
            ca=False,
            sans=sans,
            hash_algorithm=hash_algorithm,
            eku=eku,
        )
        return self.write(kind, cert, key, tuple(i.cert for i in chain))

def install_for_prosody(issued: Issued, certs_dir: Path, domain: str) -> tuple[Path, Path]:
    """
    Copy C{issued} into Prosody's certificate directory as
    C{<domain>.crt} (leaf + intermediates) and C{<domain>.key}.

    @return: the two paths written.
    """
    certs_dir = Path(certs_dir)
    certs_dir.mkdir(parents=True, exist_ok=True)
    crt, key = certs_dir / f"{domain}.crt", certs_dir / f"{domain}.key"
    crt.write_bytes(issued.fullchain_pem)
    key.write_bytes(issued.key_pem)
    key.chmod(0o600)
    return crt, key
