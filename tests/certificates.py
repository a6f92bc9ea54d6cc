"""Certificates made at test time: a CA, a server certificate for 127.0.0.1/localhost, a client one."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server: Pair
    client: Pair
    stranger: Pair  # a client certificate from another CA


def make_certificates(folder: Path, server_name: str = "localhost") -> Certificates:
    """The server certificate names `server_name` and 127.0.0.1."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _authority("test CA")
    other_key, other_cert = _authority("another CA")
    (folder / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    server = _leaf(folder, "server", ca_key, ca_cert, ExtendedKeyUsageOID.SERVER_AUTH, server_name)
    client = _leaf(folder, "client", ca_key, ca_cert, ExtendedKeyUsageOID.CLIENT_AUTH)
    stranger = _leaf(folder, "stranger", other_key, other_cert, ExtendedKeyUsageOID.CLIENT_AUTH)
    return Certificates(folder / "ca.pem", server, client, stranger)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def _authority(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _builder(name, _name(name), key).add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    return key, builder.sign(key, hashes.SHA256())


def _leaf(
    folder: Path,
    name: str,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    usage: x509.ObjectIdentifier,
    dns_name: str = "localhost",
) -> Pair:
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(dns_name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        _builder(name, ca_cert.subject, key)
        .add_extension(x509.SubjectAlternativeName(names), False)
        .add_extension(x509.ExtendedKeyUsage([usage]), False)
        .sign(ca_key, hashes.SHA256())
    )
    pair = Pair(folder / f"{name}.pem", folder / f"{name}-key.pem")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return pair
