"""Create and delete Kafka ACLs through the admin protocol (CreateAcls / DeleteAcls v1), for the
tests: aiokafka's admin client has no ACL methods and the broker's own ``kafka-acls`` tool is not
part of the test distribution.

An :class:`Acl` is one ALLOW entry: ``Acl("TOPIC", "events", "READ")`` for a literal name,
``Acl("TOPIC", "app-", "CREATE", prefixed=True)`` for every name with that prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RESOURCE = {"TOPIC": 2, "GROUP": 3, "CLUSTER": 4, "TRANSACTIONAL_ID": 5}
OPERATION = {
    "ALL": 2,
    "READ": 3,
    "WRITE": 4,
    "CREATE": 5,
    "DELETE": 6,
    "ALTER": 7,
    "DESCRIBE": 8,
    "DESCRIBE_CONFIGS": 10,
    "IDEMPOTENT_WRITE": 12,
}
LITERAL, PREFIXED, ALLOW = 3, 4, 3

__all__ = ["Acl", "create_acls", "delete_acls"]


@dataclass(frozen=True)
class Acl:
    resource: str
    name: str
    operation: str
    prefixed: bool = False

    def __str__(self) -> str:
        kind = "prefixed " if self.prefixed else ""
        return f"{self.operation} on {kind}{self.resource} {self.name}"

    def command(self, principal: str) -> str:
        """The same entry as a ``kafka-acls`` command line (for the README)."""
        target = {
            "TOPIC": f"--topic {self.name}",
            "GROUP": f"--group {self.name}",
            "CLUSTER": "--cluster",
            "TRANSACTIONAL_ID": f"--transactional-id {self.name}",
        }[self.resource]
        pattern = " --resource-pattern-type prefixed" if self.prefixed else ""
        operation = self.operation.title().replace("_", "")
        return (
            f"kafka-acls --bootstrap-server $BROKER --add --allow-principal {principal} "
            f"--operation {operation} {target}{pattern}"
        )


async def _send(bootstrap: str, request: Any) -> Any:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await admin._send_request(request)  # noqa: SLF001  (no public ACL API)
    finally:
        await admin.close()


async def create_acls(bootstrap: str, principal: str, acls: list[Acl]) -> None:
    from aiokafka.protocol.admin import CreateAclsRequest_v1

    entries = [
        (
            RESOURCE[a.resource],
            "kafka-cluster" if a.resource == "CLUSTER" else a.name,
            PREFIXED if a.prefixed else LITERAL,
            principal,
            "*",
            OPERATION[a.operation],
            ALLOW,
        )
        for a in acls
    ]
    response = await _send(bootstrap, _Fixed(CreateAclsRequest_v1(entries)))
    errors = [(code, msg) for code, msg in response.creation_responses if code]
    if errors:
        raise RuntimeError(f"CreateAcls failed: {errors}")


async def delete_acls(bootstrap: str, principal: str, acls: list[Acl]) -> None:
    from aiokafka.protocol.admin import DeleteAclsRequest_v1

    filters = [
        (
            RESOURCE[a.resource],
            "kafka-cluster" if a.resource == "CLUSTER" else a.name,
            PREFIXED if a.prefixed else LITERAL,
            principal,
            "*",
            OPERATION[a.operation],
            ALLOW,
        )
        for a in acls
    ]
    response = await _send(bootstrap, _Fixed(DeleteAclsRequest_v1(filters)))
    errors = [r[0] for r in response.filter_responses if r[0]]
    if errors:
        raise RuntimeError(f"DeleteAcls failed: {errors}")


class _Fixed:
    """A request of one fixed version, in the shape aiokafka's client sends."""

    def __init__(self, struct: Any) -> None:
        self.struct = struct
        self.API_KEY = struct.API_KEY

    def prepare(self, versions: Any) -> Any:
        return self.struct
