"""The production shape, run here: the images built by ``make test-containers``, the compose
stack of deploy/compose.yaml on the host network (three Kafka brokers, replication 3,
``min.insync.replicas`` 2, two workers of each service), the live demo through it, and one
broker killed while clicks and orders flow."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, SaslAuthenticationFailed, TopicAuthorizationFailedError
from pydantic import SecretStr

from deploy.compose_env import scram_password_variable
from deploy.demo.live import order_events
from deploy.stack.acls import ADMIN_USER
from services.commission.core.commission import LineItem, commission_on
from shared.config import Settings
from shared.events import Topic
from tests.containers.stack import IMAGES, KAFKA_PORTS, PORTS, POSTGRES_PORT, ComposeStack
from tests.integration.harness import (
    BROWSER_UA,
    Services,
    Store,
    eventually,
    ledger_lines,
    new_affiliate,
    new_link,
    new_store,
    order_view,
    signed_post,
    uid,
    visitor_of,
)

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
RATE = Decimal("0.08")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    missing = [
        image
        for image in IMAGES
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode
    ]
    if missing:
        pytest.fail(f"images missing: {missing} (make test-containers builds them)")
    compose = ComposeStack.create("alliance-ci", tmp_path_factory.mktemp("compose"))
    compose.down()  # what a killed earlier run left behind
    try:
        compose.run("up", "--detach", "--wait", timeout=600)
        compose.wait_ready()
        yield compose
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "compose.log").write_text(compose.logs())
        compose.down()


def settings_of(stack: ComposeStack, kafka_user: str = ADMIN_USER) -> Settings:
    """The deployment's settings as seen from the host (its loopback ports, its secrets),
    logged in to Kafka as ``kafka_user`` (SASL_SSL, SCRAM-SHA-512, the deployment's CA)."""
    v = stack.values
    return Settings(
        env="production",
        host="127.0.0.1",
        tracker_port=PORTS["tracker"][0],
        commission_port=PORTS["commission"][0],
        kafka_bootstrap=",".join(f"127.0.0.1:{p}" for p in KAFKA_PORTS),
        database_url=(
            f"postgresql+asyncpg://alliance:{v['POSTGRES_PASSWORD']}@127.0.0.1:{POSTGRES_PORT}"
            "/alliance"
        ),
        admin_token=v["ALLIANCE_ADMIN_TOKEN"],
        secret_key=v["ALLIANCE_SECRET_KEY"],
        link_keys=v["ALLIANCE_LINK_KEYS"],
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username=kafka_user,
        kafka_sasl_password=v[scram_password_variable(kafka_user.removeprefix("alliance-"))],
        kafka_ssl_cafile=stack.tls / "ca.crt",
    )


def environment(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "ALLIANCE_ENV": "production",
        "ALLIANCE_HOST": settings.host,
        "ALLIANCE_TRACKER_PORT": str(settings.tracker_port),
        "ALLIANCE_COMMISSION_PORT": str(settings.commission_port),
        "ALLIANCE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "ALLIANCE_DATABASE_URL": settings.database_url,
        "ALLIANCE_ADMIN_TOKEN": settings.admin_token,
        "ALLIANCE_SECRET_KEY": settings.secret_key,
        "ALLIANCE_LINK_KEYS": settings.link_keys,
        "ALLIANCE_KAFKA_SECURITY_PROTOCOL": settings.kafka_security_protocol,
        "ALLIANCE_KAFKA_SASL_MECHANISM": str(settings.kafka_sasl_mechanism),
        "ALLIANCE_KAFKA_SASL_USERNAME": str(settings.kafka_sasl_username),
        "ALLIANCE_KAFKA_SASL_PASSWORD": (
            password.get_secret_value() if (password := settings.kafka_sasl_password) else ""
        ),
        "ALLIANCE_KAFKA_SSL_CAFILE": str(settings.kafka_ssl_cafile),
    }


def ledger_verified_in_a_container(stack: ComposeStack) -> str:
    """`alliance ledger verify` run by the image itself (the CLI is in the same image)."""
    proc = stack.run("run", "--rm", "--no-deps", "commission-1", "ledger", "verify")
    return proc.stdout


def test_the_live_demo_runs_through_the_containers(stack: ComposeStack) -> None:
    settings = settings_of(stack)
    proc = subprocess.run(
        [sys.executable, "-m", "deploy.cli", "demo", "--no-quarter", "--orders", "12"],
        env=environment(settings),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "commission payable this run:" in proc.stdout
    assert "on 12 orders" not in proc.stdout  # one in four is organic, one in six cancelled
    assert "ledger OK" in ledger_verified_in_a_container(stack)


async def test_the_topics_job_made_replicated_topics_and_compacted_tables(
    stack: ComposeStack,
) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    from deploy.stack.kafka import topic_configs

    settings = settings_of(stack)
    assert {len(p["replicas"]) for p in await partitions(settings)} == {3}
    admin = AIOKafkaAdminClient(**settings.kafka.client_options())
    await admin.start()
    try:
        configs = await topic_configs(admin, [settings.topic(t) for t in Topic])
    finally:
        await admin.close()
    compacted = {name for name, c in configs.items() if c["cleanup.policy"][0] == "compact"}
    assert compacted == {settings.topic(Topic.DIRECTORY), settings.topic(Topic.CATALOG)}
    assert {c["min.insync.replicas"][0] for c in configs.values()} == {"2"}


# --------------------------------------------------------------------------------------------
# Kafka's door: SASL_SSL with SCRAM-SHA-512, each service's user limited by its ACLs


class TestKafkaSecurity:
    async def test_a_client_with_a_wrong_scram_password_is_refused(
        self, stack: ComposeStack
    ) -> None:
        from aiokafka.conn import create_conn

        settings = settings_of(stack, "alliance-tracker")
        host, port = "127.0.0.1", KAFKA_PORTS[0]
        right = await create_conn(host, port, **settings.kafka_security())  # the control
        right.close()
        wrong = settings.model_copy(update={"kafka_sasl_password": SecretStr("not-the-password")})
        with pytest.raises(SaslAuthenticationFailed):
            await create_conn(host, port, **wrong.kafka_security())

    @pytest.mark.parametrize(
        ("user", "topic"),
        [("alliance-tracker", Topic.ATTRIBUTIONS), ("alliance-attribution", Topic.DIRECTORY)],
    )
    async def test_a_service_cannot_write_a_topic_its_acls_do_not_grant(
        self, stack: ComposeStack, user: str, topic: Topic
    ) -> None:
        settings = settings_of(stack, user)
        producer = AIOKafkaProducer(**settings.kafka.client_options(), enable_idempotence=True)
        await producer.start()  # logged in: the refusal below is the ACL's, not the password's
        try:
            with pytest.raises(TopicAuthorizationFailedError):
                await producer.send_and_wait(settings.topic(topic), b"minted")
        finally:
            await producer.stop()


# --------------------------------------------------------------------------------------------
# A broker killed under load


@pytest.fixture
async def services(stack: ComposeStack) -> AsyncIterator[list[Services]]:
    """Clients of each worker pair: [tracker-1 + commission-1, tracker-2 + commission-2]."""
    clients = [
        (
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{PORTS['tracker'][i]}",
                headers={"User-Agent": BROWSER_UA},
                timeout=30,
            ),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{PORTS['commission'][i]}", timeout=30),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{PORTS['attribution'][i]}", timeout=30),
        )
        for i in range(2)
    ]
    try:
        yield [Services(t, a, c, apps={}) for t, c, a in clients]
    finally:
        for group in clients:
            for client in group:
                await client.aclose()


async def acknowledged(tracker: httpx.AsyncClient, store: Store, events: list[Any]) -> int:
    """Post ``events`` as a storefront does: the same body again on 503 until it is
    acknowledged (202). Returns how many posts it took."""
    for attempt in range(1, 120):
        resp = await signed_post(tracker, "/v1/events", store, {"events": events})
        if resp.status_code == 202:
            return attempt
        assert resp.status_code == 503, resp.text  # Kafka not acknowledging: retry later
        await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
    raise AssertionError("the tracker never acknowledged the events")


async def partitions(settings: Settings) -> list[dict[str, Any]]:
    """Every partition of the project's topics: its leader, replicas and in-sync replicas."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**settings.kafka.client_options())
    await admin.start()
    try:
        described = await admin.describe_topics([settings.topic(t) for t in Topic])
    finally:
        await admin.close()
    return [p for t in described for p in t["partitions"]]


async def test_a_broker_killed_while_clicks_and_orders_flow_loses_and_doubles_nothing(
    stack: ComposeStack, services: list[Services]
) -> None:
    settings = settings_of(stack)
    first, second = services
    run = uid()
    products = ("p1", "p2", "p3")
    store = await new_store(first, settings, f"kill-{run}", products=products, rate=str(RATE))
    affiliate = f"aff-{run}"
    key = await new_affiliate(first, settings, affiliate)
    codes = [str((await new_link(first, key, store.store_id, p))["code"]) for p in products]

    async def second_tracker_knows() -> bool | None:  # the directory reached both trackers
        resp = await second.tracker.get(f"/r/{codes[0]}", headers={"X-Forwarded-For": "192.0.2.1"})
        return True if resp.status_code == 302 else None

    await eventually(second_tracker_knows, timeout_s=60)
    warm_up_clicks = 1
    # the broker to kill (node 2) leads partitions: killing it moves leaders mid-flow
    before = await partitions(settings)
    assert {len(p["replicas"]) for p in before} == {3}
    assert any(p["leader"] == 2 for p in before)

    expected: dict[str, Decimal] = {}
    statuses: dict[str, str] = {}
    posts: list[int] = []

    async def buyer(n: int) -> None:
        """Buyer ``n`` clicks on one tracker; the storefront reports the order (placed, then
        completed or cancelled) to the other, again on 503, as storefronts do."""
        clicker, reporter = services[n % 2], services[(n + 1) % 2]
        code, product = codes[n % 3], products[n % 3]
        redirect = await clicker.tracker.get(
            f"/r/{code}", headers={"X-Forwarded-For": f"203.0.{113 + n // 250}.{n % 250 + 1}"}
        )
        assert redirect.status_code == 302, redirect.text  # acknowledged (Kafka or spool)
        order_id = f"o-{run}-{n:03d}"
        unit_price, shipping, quantity = Decimal("19.99") + n, Decimal("2.50"), 1 + n % 3
        status = "order_cancelled" if n % 5 == 4 else "order_completed"
        line = (product, "c1", f"Product {product}", str(unit_price), str(shipping))
        events = order_events(order_id, visitor_of(redirect), line, quantity, status)
        posts.append(await acknowledged(reporter.tracker, store, events))
        item = LineItem(product, "c1", quantity, unit_price, shipping)
        completed = status == "order_completed"
        expected[order_id] = commission_on(item.base, RATE, "USD") if completed else Decimal(0)
        statuses[order_id] = status.removeprefix("order_")

    lanes, kill_after, down_s, after_s = 4, 30, 15.0, 3.0
    through = asyncio.Event()  # kill_after buyers are through
    stop = asyncio.Event()  # the broker is back, and buyers kept coming for after_s more
    queue = itertools.count()

    async def lane() -> None:
        for n in queue:  # the lanes share one iterator: each buyer once
            if stop.is_set():
                return
            await buyer(n)
            if len(posts) >= kill_after:
                through.set()

    async def chaos() -> tuple[int, int]:
        """SIGKILL kafka-2 once ``kill_after`` buyers are through, start it ``down_s`` later
        (longer than the brokers' session timeout: its partitions change leader), let buyers
        come ``after_s`` more. Returns the buyers through at the kill and at the start."""
        await through.wait()
        at_kill = len(posts)
        killed = stack.container("kafka-2")
        await asyncio.to_thread(
            subprocess.run, ["docker", "kill", killed], check=True, capture_output=True
        )
        await asyncio.sleep(down_s)
        at_start = len(posts)
        await asyncio.to_thread(stack.run, "start", "kafka-2")
        await asyncio.sleep(after_s)
        stop.set()
        return at_kill, at_start

    started = time.monotonic()
    flows = [asyncio.create_task(lane()) for _ in range(lanes)]
    at_kill, at_start = await chaos()
    await asyncio.gather(*flows)
    flow_s = time.monotonic() - started
    buyers = len(posts)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "broker-kill.txt").write_text(
        f"{buyers} buyers on {lanes} lanes in {flow_s:.1f} s; {sum(posts)} storefront posts "
        f"for {buyers} orders (a 503 while a partition had no leader is sent again); kafka-2 "
        f"killed after {at_kill} buyers, started again {down_s} s later after {at_start}\n"
    )
    # buyers came while the broker was down and after it came back
    assert at_kill < at_start < buyers
    assert len(expected) == buyers

    async def settled(order_id: str, status: str) -> dict[str, Any]:
        view = await eventually(
            lambda: order_view(
                first, settings, (store.store_id, order_id), status=status, attribution_decided=True
            ),
            timeout_s=240,
        )
        return view

    views = {order_id: await settled(order_id, status) for order_id, status in statuses.items()}
    # every order was attributed to the affiliate's click and charged what the core computes
    assert {v["affiliate_id"] for v in views.values()} == {affiliate}
    assert {o: Decimal(v["payable"]) for o, v in views.items()} == expected

    # exactly one commission transaction per completed order, none for a cancelled one
    lines = [
        posting
        for posting in await ledger_lines(first.commission, settings)
        if posting["order_id"] in expected
    ]
    transactions: dict[str, set[int]] = {}
    for posting in lines:
        if posting["kind"] == "commission":
            transactions.setdefault(posting["order_id"], set()).add(posting["txn_id"])
    assert {o: len(t) for o, t in transactions.items()} == {
        o: 1 for o, amount in expected.items() if amount
    }
    earned = sum(
        (Decimal(x["amount"]) for x in lines if x["account"] == f"affiliate:{affiliate}:earned"),
        Decimal(0),
    )
    assert earned == sum(expected.values())

    # every acknowledged click counted once: the store's traffic report
    day = datetime.now(UTC).date().isoformat()

    async def clicks_counted() -> int | None:
        resp = await second.commission.get(
            f"/v1/stores/{store.store_id}/reports/traffic",
            params={"from": day, "to": day},
            headers=store.auth,
        )
        assert resp.status_code == 200, resp.text
        total = resp.json()["total"]
        counted = int(total["affiliate_clicks"]) + int(total["suspicious_clicks"])
        return counted if counted >= buyers + warm_up_clicks else None

    assert await eventually(clicks_counted, timeout_s=120) == buyers + warm_up_clicks

    # the broker is back in every partition's in-sync replicas
    async def all_in_sync() -> bool | None:
        try:
            described = await partitions(settings)
        except KafkaError:  # the restarted broker is still opening its listener: not yet
            return None
        return True if {len(p["isr"]) for p in described} == {3} else None

    await eventually(all_in_sync, timeout_s=120)
    assert "ledger OK" in ledger_verified_in_a_container(stack)

    # no worker crashed or logged an error of its own (aiokafka's reconnection noise aside),
    # and no partition was stopped by its dead-letter limit
    workers = [f"{name}-{i}" for name in PORTS for i in (1, 2)]
    assert {w: stack.restarts(w) for w in workers} == dict.fromkeys(workers, 0)
    own_errors = re.compile(r" (ERROR|CRITICAL) (services|shared|deploy)\.| STOPPED ")
    assert [line for line in stack.logs(tail=None).splitlines() if own_errors.search(line)] == []
