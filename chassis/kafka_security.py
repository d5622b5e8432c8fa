"""How every Kafka client of Orchard authenticates and encrypts: one place, read from the environment.

The relay, the consumers, the DLQ tools, the readiness probe, topic creation and the CLI all build their
clients with `client_options()` (aiokafka) or `faststream_security()` (FastStream's broker), so a
deployment switches every one of them to TLS and SASL/SCRAM with the same settings:

- `ORCHARD_KAFKA_SECURITY_PROTOCOL`: `PLAINTEXT` (default), `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`;
- `ORCHARD_KAFKA_SASL_MECHANISM`: `SCRAM-SHA-512` (default) or `SCRAM-SHA-256`;
- `ORCHARD_KAFKA_SASL_USERNAME` / `ORCHARD_KAFKA_SASL_PASSWORD`: the service's principal;
- `ORCHARD_KAFKA_SSL_CA_FILE`: the CA bundle that signed the brokers' certificates (default: the
  system's trust store).

Which principal may do what is `orchard acls` (deploy/kafka_acls.py), derived from the topic registry.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faststream.security import BaseSecurity

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None

    @classmethod
    def read(cls, env: Mapping[str, str] | None = None) -> KafkaSecurity:
        """The settings as given, unchecked."""
        env = os.environ if env is None else env
        return cls(
            protocol=(env.get("ORCHARD_KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").strip().upper(),
            mechanism=(env.get("ORCHARD_KAFKA_SASL_MECHANISM") or "SCRAM-SHA-512").strip().upper(),
            username=env.get("ORCHARD_KAFKA_SASL_USERNAME") or None,
            password=env.get("ORCHARD_KAFKA_SASL_PASSWORD") or None,
            ca_file=env.get("ORCHARD_KAFKA_SSL_CA_FILE") or None,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaSecurity:
        """The settings, or a ValueError naming each one that cannot work."""
        security = cls.read(env)
        if problems := security.problems():
            raise ValueError("; ".join(problems))
        return security

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    def problems(self) -> list[str]:
        """One line per setting that cannot work, naming it."""
        problems = []
        if self.protocol not in PROTOCOLS:
            problems.append(
                f"ORCHARD_KAFKA_SECURITY_PROTOCOL={self.protocol} is not one of {', '.join(PROTOCOLS)}"
            )
        if self.uses_sasl:
            if self.mechanism not in MECHANISMS:
                problems.append(
                    f"ORCHARD_KAFKA_SASL_MECHANISM={self.mechanism} is not one of {', '.join(MECHANISMS)}"
                )
            if not self.username:
                problems.append(f"ORCHARD_KAFKA_SASL_USERNAME is not set (needed for {self.protocol})")
            if not self.password:
                problems.append(f"ORCHARD_KAFKA_SASL_PASSWORD is not set (needed for {self.protocol})")
        if self.ca_file and not os.path.isfile(self.ca_file):
            problems.append(f"ORCHARD_KAFKA_SSL_CA_FILE={self.ca_file} is not a readable file")
        return problems

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.uses_tls:
            return None
        # Verifies the broker's certificate and host name, against the given CA or the system's.
        return ssl.create_default_context(cafile=self.ca_file)

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for any aiokafka client (producer, consumer, admin, low-level client)."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_tls:
            options["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            options |= {
                "sasl_mechanism": self.mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        return options

    def faststream_security(self) -> BaseSecurity | None:
        """The same, as FastStream's KafkaBroker takes it (`security=`)."""
        from faststream.security import BaseSecurity, SASLScram256, SASLScram512

        if self.protocol == "PLAINTEXT":
            return None
        if not self.uses_sasl:
            return BaseSecurity(ssl_context=self.ssl_context(), use_ssl=True)
        # from_env() refused a SASL protocol without both.
        username, password = self.username or "", self.password or ""
        scram = SASLScram512 if self.mechanism == "SCRAM-SHA-512" else SASLScram256
        return scram(username, password, ssl_context=self.ssl_context(), use_ssl=self.uses_tls)


def production_refusals(env: Mapping[str, str] | None = None) -> list[str]:
    """Outside development Kafka is reached over TLS with a principal of its own (DESIGN.md §5): one
    line per setting that falls short."""
    security = KafkaSecurity.read(env)
    refusals = security.problems()
    if security.protocol != "SASL_SSL" and security.protocol in PROTOCOLS:
        refusals.append(
            f"ORCHARD_KAFKA_SECURITY_PROTOCOL={security.protocol}: outside development Kafka is reached "
            "with SASL_SSL, so that only this service's principal can read and write what its ACLs allow"
        )
    return refusals


def client_options(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """aiokafka keyword arguments for this process's Kafka security settings (see the module doc)."""
    return KafkaSecurity.from_env(env).client_options()
