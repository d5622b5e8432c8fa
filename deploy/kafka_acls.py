"""Kafka ACLs for each principal, derived from the topic registry (`orchard acls [--apply]`).

Each service's principal (`User:orchard-<service>`) may:
- write and describe the topics the registry names it a producer of, and use the transactional ids of
  its outbox relay (`orchard-relay-<service>-…`);
- read and describe the topics it consumes, read its own consumer groups (`orchard.<service>.…`), and
  write and describe-configs the dead-letter twins of those topics.
The HR systems' principal (`User:orchard-hris`) may only write `ipa.record_submitted` and
`order.cancel_requested`. Nothing else is allowed: the broker runs with `allow.everyone.if.no.acl.found
=false`, so a principal without a binding is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from contracts.registry import HRIS, SERVICES, TOPICS


class Resource(IntEnum):  # Kafka's ResourceType codes
    TOPIC = 2
    GROUP = 3
    TRANSACTIONAL_ID = 5


class Pattern(IntEnum):  # Kafka's PatternType codes
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):  # Kafka's AclOperation codes
    READ = 3
    WRITE = 4
    DESCRIBE = 8
    DESCRIBE_CONFIGS = 10


ALLOW = 3  # Kafka's AclPermissionType.ALLOW


@dataclass(frozen=True, order=True)
class AclBinding:
    principal: str
    resource: Resource
    name: str
    pattern: Pattern
    operation: Operation

    def line(self) -> str:
        kind = "prefixed" if self.pattern is Pattern.PREFIXED else "literal"
        return (
            f"{self.principal:<24} {self.operation.name:<16} {self.resource.name.lower()} "
            f"{self.name}{'*' if kind == 'prefixed' else ''}"
        )


def principal(party: str) -> str:
    return f"User:orchard-{party}"


def _topic(who: str, name: str, *operations: Operation) -> list[AclBinding]:
    return [AclBinding(who, Resource.TOPIC, name, Pattern.LITERAL, op) for op in operations]


def bindings(parties: Sequence[str] = (*SERVICES, HRIS), group_prefix: str = "orchard") -> list[AclBinding]:
    """Every ACL the registry implies for these parties (services and `hris`), sorted."""
    acls: set[AclBinding] = set()
    for party in parties:
        who = principal(party)
        for spec in TOPICS:
            if party in spec.producers:
                acls.update(_topic(who, spec.name, Operation.WRITE, Operation.DESCRIBE))
            if party in spec.consumers:
                acls.update(_topic(who, spec.name, Operation.READ, Operation.DESCRIBE))
                dead_letters = (Operation.WRITE, Operation.DESCRIBE, Operation.DESCRIBE_CONFIGS)
                acls.update(_topic(who, spec.dlq, *dead_letters))
        if party == HRIS:
            continue
        if any(party in spec.consumers for spec in TOPICS):
            group = f"{group_prefix}.{party}."
            acls.add(AclBinding(who, Resource.GROUP, group, Pattern.PREFIXED, Operation.READ))
        if any(party in spec.producers for spec in TOPICS):
            relay = f"orchard-relay-{party}-"
            for op in (Operation.WRITE, Operation.DESCRIBE):
                acls.add(AclBinding(who, Resource.TRANSACTIONAL_ID, relay, Pattern.PREFIXED, op))
    return sorted(acls)


async def apply(bootstrap: str, acls: Iterable[AclBinding], **client_options: object) -> int:
    """Create these ACLs on the cluster (idempotent: an existing binding is kept). Needs a principal
    allowed to alter ACLs (a super user). Returns how many bindings were sent."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.protocol.admin import CreateAclsRequest

    from deploy.infra.errors import InfraError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_options)
    await admin.start()
    sent = 0
    try:
        node = admin._client.get_random_node()
        for acl in acls:
            request = CreateAclsRequest(
                resource_type=int(acl.resource),
                resource_name=acl.name,
                resource_pattern_type_filter=int(acl.pattern),
                principal=acl.principal,
                host="*",
                operation=int(acl.operation),
                permission_type=ALLOW,
            )
            response = await admin._client.send(node, request)
            for error_code, message in response.creation_responses:
                if error_code:
                    raise InfraError(f"creating the ACL {acl.line()} failed: {message or error_code}")
            sent += 1
    finally:
        await admin.close()
    return sent
