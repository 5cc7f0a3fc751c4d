"""Who may do what on the Kafka cluster: the ACL table, as data, and its application.

One principal per service (a SCRAM-SHA-512 user: compose's ``deploy/.env``, the chart's
Strimzi ``KafkaUser``s), each allowed exactly what its code does: the topics it writes, the
topics it reads, the consumer groups it commits in. The admin principal (the topics job,
``alliance dlq``, ``alliance attribution rebuild``) is the only super user; the brokers
authenticate to each other with their certificates. tests/deploy/test_kafka_acls.py checks
the table against the producers and consumers declared in the code, so a new topic or
consumer cannot be forgotten here.

:func:`bindings` turns the table into ACL bindings for one deployment's topic prefix;
:func:`apply_acls` creates them with the admin client (``alliance topics --acls``, the
compose topics job); the chart renders the same table into ``KafkaUser`` resources
(``deploy/stack/helm.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shared.config import KafkaConnection
from shared.events import Topic
from shared.kafka import consumer_group

#: The SCRAM user of the admin tools and the topics job: the only super user.
ADMIN_USER = "alliance-admin"


@dataclass(frozen=True)
class ServiceAccess:
    """What one service's principal may do: write ``writes``, read ``reads``, and commit in
    the consumer groups of its consumers ``groups`` (names, as in ``Consumes.name``)."""

    service: str
    writes: frozenset[Topic]
    reads: frozenset[Topic]
    groups: frozenset[str]

    @property
    def user(self) -> str:
        """The service's SCRAM user name."""
        return f"alliance-{self.service}"


#: The table. The tracker reads the directory, the catalog and the storefront topics without
#: a group (its in-memory directory and dedup feed assigns partitions itself).
ACL_TABLE: tuple[ServiceAccess, ...] = (
    ServiceAccess(
        "tracker",
        writes=frozenset({Topic.CLICKS, Topic.ORDERS, Topic.PAGE_VIEWS, Topic.CATALOG}),
        reads=frozenset({Topic.DIRECTORY, Topic.CATALOG, Topic.ORDERS, Topic.PAGE_VIEWS}),
        groups=frozenset(),
    ),
    ServiceAccess(
        "attribution",
        writes=frozenset({Topic.ATTRIBUTIONS, Topic.DEAD_LETTERS}),
        reads=frozenset({Topic.CLICKS, Topic.ORDERS, Topic.DIRECTORY, Topic.PRIVACY}),
        groups=frozenset({"attribution"}),
    ),
    ServiceAccess(
        "commission",
        writes=frozenset({Topic.DIRECTORY, Topic.DEAD_LETTERS, Topic.PRIVACY}),
        reads=frozenset(
            {Topic.ATTRIBUTIONS, Topic.ORDERS, Topic.CLICKS, Topic.PAGE_VIEWS, Topic.CATALOG}
        ),
        groups=frozenset({"commission", "reports"}),
    ),
)

SERVICES: tuple[str, ...] = tuple(a.service for a in ACL_TABLE)


@dataclass(frozen=True, order=True)
class Binding:
    """One ALLOW ACL on a literal resource: ``resource`` is "topic" or "group"."""

    principal: str  # "User:<name>"
    resource: str
    name: str
    operation: str  # "Read", "Write" (both imply "Describe")


def access_of(service: str) -> ServiceAccess:
    for access in ACL_TABLE:
        if access.service == service:
            return access
    raise KeyError(service)


def bindings(prefix: str = "", table: Iterable[ServiceAccess] = ACL_TABLE) -> list[Binding]:
    """Every ACL of ``table`` for the topic prefix ``prefix`` (names as the services use them)."""
    out: set[Binding] = set()
    for access in table:
        principal = f"User:{access.user}"
        for topic in access.writes:
            out.add(Binding(principal, "topic", f"{prefix}{topic}", "Write"))
        for topic in access.reads:
            out.add(Binding(principal, "topic", f"{prefix}{topic}", "Read"))
        for group in access.groups:
            out.add(Binding(principal, "group", consumer_group(prefix, group), "Read"))
    return sorted(out)


# Kafka's wire codes (org.apache.kafka.common.resource / acl)
_RESOURCE = {"topic": 2, "group": 3}
_OPERATION = {"Read": 3, "Write": 4, "Describe": 8}
_LITERAL, _ALLOW = 3, 3


async def apply_acls(kafka: KafkaConnection, prefix: str = "") -> int:
    """Create the ACLs of :data:`ACL_TABLE` for ``prefix`` in the cluster ``kafka`` (as a super
    user: ALLIANCE_KAFKA_SASL_USERNAME is the admin's); idempotent (Kafka keeps one copy of an
    ACL created twice). Returns how many bindings were sent; a broker error raises."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import for_code
    from aiokafka.protocol.admin import CreateAclsRequest

    wanted = bindings(prefix)
    admin = AIOKafkaAdminClient(**kafka.client_options(), request_timeout_ms=15_000)
    await admin.start()
    try:
        for b in wanted:
            # aiokafka has no ACL call of its own: the protocol's request through its client
            request = CreateAclsRequest(
                _RESOURCE[b.resource],
                b.name,
                _LITERAL,
                b.principal,
                "*",
                _OPERATION[b.operation],
                _ALLOW,
            )
            response = await admin._send_request(request)
            for code, message in response.creation_responses:
                if code != 0:
                    raise for_code(code)(f"creating ACL {b}: {message}")
    finally:
        await admin.close()
    return len(wanted)
