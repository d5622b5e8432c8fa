"""A throwaway certificate authority and a server certificate for a local broker's TLS listener.

The CA's certificate is written as PEM (clients trust it through `ORCHARD_KAFKA_SSL_CA_FILE`); the
server's key and certificate chain as a PKCS#12 keystore, which the JVM reads directly.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class ServerTls:
    ca_file: Path
    keystore: Path
    keystore_password: str


def _name(common_name: str) -> x509.Name:
    organisation = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Orchard local")
    return x509.Name([organisation, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def issue_server_tls(directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> ServerTls:
    """A new CA and a server certificate for `hosts`, valid for 30 days, written under `directory`."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Orchard local CA"))
        .issuer_name(_name("Orchard local CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
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
        .sign(ca_key, hashes.SHA256())
    )
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    password = secrets.token_urlsafe(18)
    ca_file = directory / "ca.pem"
    keystore = directory / "broker.p12"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    keystore.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"broker",
            server_key,
            server_cert,
            [ca_cert],
            serialization.BestAvailableEncryption(password.encode()),
        )
    )
    keystore.chmod(0o600)
    return ServerTls(ca_file=ca_file, keystore=keystore, keystore_password=password)
