"""The Kafka ACL table (deploy/stack/acls.py) against the code: every consumer's group and
topics, the tracker's directory feed, every topic a service names, one writer per topic."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from deploy.stack.acls import ACL_TABLE, ADMIN_USER, Binding, access_of, bindings
from services.attribution.consumer import CONSUMER as ATTRIBUTION
from services.commission.orders.consumer import CONSUMER as COMMISSION
from services.commission.reports.consumer import CONSUMER as REPORTS
from shared.config import KafkaConnection
from shared.events import Topic
from shared.kafka import Consumes

ROOT = Path(__file__).resolve().parents[2]

#: every consumer declared in the code, with the service whose principal runs it
CONSUMERS: list[tuple[str, Consumes[Any]]] = [
    ("attribution", ATTRIBUTION),
    ("commission", COMMISSION),
    ("commission", REPORTS),
]

#: admin tools inside a service's folder that run as the admin principal, not the service's
ADMIN_TOOLS = {"services/attribution/rebuild.py"}


@pytest.mark.parametrize(("service", "consumes"), CONSUMERS, ids=lambda c: getattr(c, "name", c))
def test_each_consumer_group_reads_only_its_declared_topics(
    service: str, consumes: Consumes[Any]
) -> None:
    access = access_of(service)
    assert consumes.name in access.groups
    assert set(consumes.routes) <= access.reads
    # a consumer dead-letters what it can never process
    assert Topic.DEAD_LETTERS in access.writes


def test_acl_groups_are_exactly_the_declared_consumers() -> None:
    declared = {(service, consumes.name) for service, consumes in CONSUMERS}
    assert {(a.service, g) for a in ACL_TABLE for g in a.groups} == declared


def test_tracker_feed_topics_are_in_the_trackers_reads() -> None:
    from services.tracker.directory import Directory, DirectoryFeed

    feed = DirectoryFeed(
        KafkaConnection("127.0.0.1:1", {}),
        "",
        Directory(),
        timedelta(hours=1),
        clock=None,  # type: ignore[arg-type]
    )
    assert {Topic(t) for t in feed.full | feed.recent} <= access_of("tracker").reads


def test_every_topic_a_service_names_is_in_its_acls() -> None:
    """A new topic a service produces or reads cannot be forgotten in the table."""
    for access in ACL_TABLE:
        named: set[Topic] = set()
        for path in (ROOT / "services" / access.service).rglob("*.py"):
            if str(path.relative_to(ROOT)) in ADMIN_TOOLS:
                continue
            named |= {Topic[m] for m in re.findall(r"Topic\.([A-Z_]+)", path.read_text())}
        assert named <= access.reads | access.writes, (access.service, named)


def test_only_one_service_writes_each_topic() -> None:
    writers = {t: {a.service for a in ACL_TABLE if t in a.writes} for t in Topic}
    assert writers[Topic.CLICKS] == writers[Topic.ORDERS] == {"tracker"}
    assert writers[Topic.PAGE_VIEWS] == writers[Topic.CATALOG] == {"tracker"}
    assert writers[Topic.ATTRIBUTIONS] == {"attribution"}
    assert writers[Topic.DIRECTORY] == {"commission"}
    assert writers[Topic.DEAD_LETTERS] == {"attribution", "commission"}
    assert writers[Topic.PRIVACY] == {"commission"}  # erasures (docs/privacy.md)


def test_kafka_acls_only_tracker_attribution_commission_write_their_topics() -> None:
    writes = {(b.name, b.principal) for b in bindings("p-") if b.operation == "Write"}
    assert ("p-attributions", "User:alliance-attribution") in writes
    assert ("p-directory", "User:alliance-commission") in writes
    for topic in ("p-attributions", "p-directory", "p-clicks", "p-orders"):
        assert len([w for w in writes if w[0] == topic]) == 1
    assert all(ADMIN_USER not in b.principal for b in bindings())
    assert Binding("User:alliance-commission", "group", "p-alliance-reports", "Read") in bindings(
        "p-"
    )
