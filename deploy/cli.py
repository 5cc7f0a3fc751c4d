"""The ``alliance`` command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shared import logs, tracing
from shared.config import InsecureSettings, Settings, get_settings
from shared.secrets import PrincipalKind

SERVICES = {
    "tracker": ("services.tracker.app:create_app", "tracker_port"),
    "attribution": ("services.attribution.app:create_app", "attribution_port"),
    "commission": ("services.commission.app:create_app", "commission_port"),
}


def _stack(args: argparse.Namespace, settings: Settings) -> int:
    from deploy.stack import orchestrate

    if args.action == "up":
        stack = orchestrate.up(settings)
        print(f"postgres  {stack.database_url()}")
        print(f"kafka     {stack.bootstrap}")
        print(f"state     {settings.state_dir}")
    elif args.action == "down":
        orchestrate.down(settings)
        print("stack stopped")
    else:
        for name, state in orchestrate.status(settings).items():
            print(f"{name:9} {state or 'not running'}")
    return 0


def _backup(args: argparse.Namespace, settings: Settings) -> int:
    from deploy.stack import backup, orchestrate

    cfg = orchestrate.Stack.from_settings(settings).postgres
    try:
        taken = backup.take(cfg, Path(args.dir), args.format)
    except backup.NotABackup as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except backup.BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"backup    {taken.path} ({taken.format}, {taken.size_bytes} bytes, verified)")
    return 0


def _restore(args: argparse.Namespace, _: Settings) -> int:
    from deploy.stack import backup, postgres

    cfg = postgres.PostgresConfig(state_dir=Path(args.data_dir).absolute(), port=args.port)
    try:
        backup.restore(Path(args.dir), cfg)
    except backup.NotABackup as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (backup.BackupError, postgres.PostgresStackError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"postgres  {postgres.database_url(cfg)}")
    print(f"data      {cfg.data_dir}")
    print(f"stop it   pg_ctl -D {cfg.data_dir} stop (as the owner of the data directory)")
    return 0


def _refused(settings: Settings) -> bool:
    """Print why a production deployment may not start on these settings (True), if so."""
    try:
        settings.check_production()
    except InsecureSettings as exc:
        print(f"error: {exc}", file=sys.stderr)
        return True
    return False


def _serve(name: str, settings: Settings) -> int:
    if _refused(settings):  # the app factory refuses too; this says it without a traceback
        return 2
    import gc

    # The consumers allocate many short-lived objects per batch and keep few: collect less
    # often than CPython's default (700, 10, 10). bench/attribution: about +15% events/s.
    gc.set_threshold(50_000, 20, 20)
    tracing.configure(name)  # off unless the OTEL_* variables turn it on
    try:
        return _run_server(name, settings)
    finally:
        tracing.shutdown()  # the spans still buffered


def _run_server(name: str, settings: Settings) -> int:
    import uvicorn
    import uvloop
    from uvicorn.importer import import_from_string

    target, port_attr = SERVICES[name]
    options: dict[str, Any] = {
        "loop": "uvloop",
        "http": "httptools",
        "access_log": False,
        "log_config": None,  # shared.logs configured the root logger; uvicorn's propagate to it
        "proxy_headers": True,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
        "timeout_graceful_shutdown": 30,
    }
    if settings.metrics_port is None:
        uvicorn.run(
            target, factory=True, host=settings.host, port=getattr(settings, port_attr), **options
        )
        return 0
    # /metrics on a listener of its own (ALLIANCE_METRICS_HOST, by default loopback): one
    # process, one app, two servers; the public one runs the lifespan and the shutdown
    app = import_from_string(target)()
    public = uvicorn.Server(
        uvicorn.Config(app, host=settings.host, port=getattr(settings, port_attr), **options)
    )
    metrics = uvicorn.Server(
        uvicorn.Config(
            app.state.metrics,
            host=settings.metrics_host,
            port=settings.metrics_port,
            lifespan="off",
            **options,
        )
    )

    async def both() -> None:
        listener = asyncio.create_task(metrics.serve())
        try:
            await public.serve()
        finally:
            metrics.should_exit = True
            await listener

    uvloop.run(both())
    return 0
    return 0


def _services(args: argparse.Namespace, settings: Settings) -> int:
    from deploy import procs

    run_dir = settings.state_dir / "run"
    if args.action == "start":
        if _refused(settings):  # the services inherit this environment: they would refuse it
            return 2
        pids = {}
        for i, (name, (_, port_attr)) in enumerate(SERVICES.items()):
            env, metrics = {}, ""
            if settings.metrics_port is not None:  # one listener per service: base port + i
                env["ALLIANCE_METRICS_PORT"] = str(settings.metrics_port + i)
                metrics = f"  metrics http://{settings.metrics_host}:{settings.metrics_port + i}"
            pids[name] = pid = procs.start(name, [name], run_dir, env)
            url = f"http://{settings.host}:{getattr(settings, port_attr)}"
            print(f"{name:12} pid {pid}  {url}{metrics}")
        for name, (_, port_attr) in SERVICES.items():
            url = f"http://{settings.host}:{getattr(settings, port_attr)}/readyz"
            try:
                procs.wait_ready(url, pid=pids[name], log=run_dir / f"{name}.log")
            except (procs.ServiceExited, TimeoutError) as exc:
                print(f"error: {name}: {exc}", file=sys.stderr)
                return 1
        print("all services ready")
    elif args.action == "stop":
        for name in SERVICES:
            if procs.stop(name, run_dir):
                print(f"{name:12} stopped")
    else:
        for name in SERVICES:
            running = procs.read_pid(run_dir / f"{name}.pid")
            print(f"{name:12} {'pid ' + str(running) if running else 'not running'}")
    return 0


def _rebuild(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    from datetime import timedelta

    from services.attribution.rebuild import rebuild

    since = _parse_time(args.since) if args.since else None
    if since is None:
        print("rebuild needs --from <ISO 8601 time>, e.g. --from 2026-03-01T00:00:00Z")
        return 2
    window = timedelta(days=settings.attribution_window_days)
    report = asyncio.run(rebuild(settings.kafka, settings.topic_prefix, since, window))
    print(f"orders placed since {since.isoformat()}: {report.orders}")
    print(f"same decision as emitted: {report.same}")
    print(f"different: {len(report.differences)}")
    for d in report.differences[:50]:
        what = "never emitted" if d.missing else f"emitted {d.emitted or 'organic'}"
        print(f"  {d.store_id} {d.order_id}: {what}, recomputed {d.recomputed or 'organic'}")
    if len(report.differences) > 50:
        print(f"  … and {len(report.differences) - 50} more")
    return 0 if not report.differences else 1


def _expire(settings: Settings) -> int:
    import asyncio

    from services.attribution.expiry import ClickExpiry
    from services.attribution.service import AttributionService
    from shared.clock import SystemClock
    from shared.db import scratch_sessions

    async def run() -> int:
        async with scratch_sessions(settings.database_url) as sessions:
            service = AttributionService.configured(settings, SystemClock())
            return await ClickExpiry(sessions, service, 0).run_once()

    print(f"expired clicks: {asyncio.run(run())}")
    return 0


def _retention(args: argparse.Namespace, settings: Settings) -> int:
    """One pass of the retention job over both services' schemas (docs/retention.md): what
    the services do every ALLIANCE_RETENTION_INTERVAL_S; skipped where a replica holds it."""
    import asyncio

    from shared.clock import SystemClock
    from shared.db import scratch_sessions
    from shared.retention_store import Report, RetentionJob

    async def run() -> Report:
        async with scratch_sessions(settings.database_url) as sessions:
            job = RetentionJob(sessions, ("attribution", "commission"), settings, SystemClock(), 0)
            return await job.run_once()

    report = asyncio.run(run())
    print(f"retention: {report.line()}")
    for name in report.dropped:
        print(f"  dropped {name}")
    return 0


def _ledger(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from services.commission.orders.verify import Verification, verify
    from shared.db import scratch_sessions

    async def run() -> Verification:
        async with (
            scratch_sessions(settings.database_url) as sessions,
            sessions() as session,
            session.begin(),
        ):
            return await verify(session, settings.exit_policy)

    if args.action == "summarise":
        return _summarise(settings)
    if args.action == "compact":
        return _compact(settings)
    result = asyncio.run(run())
    print(f"transactions that do not balance: {len(result.transactions_unbalanced)}")
    print(f"currencies whose accounts do not sum to zero: {len(result.currencies_unbalanced)}")
    owing = len(result.orders_owing)
    print(f"orders checked: {result.orders_checked}; orders with postings still owed: {owing}")
    for (store_id, order_id), keys in list(result.orders_owing.items())[:20]:
        print(f"  {store_id} {order_id}: {', '.join(keys)}")
    print(f"orders whose settlement summary is stale: {len(result.summaries_stale)}")
    print(f"per-day rollup keys that disagree: {len(result.rollups_stale)}")
    for key in result.rollups_stale[:20]:
        print(f"  {key}")
    print("ledger OK" if result.ok else "ledger NOT OK")
    return 0 if result.ok else 1


def _compact(settings: Settings) -> int:
    import asyncio

    from services.commission.orders.compaction import RollupCompactor
    from shared.db import scratch_sessions

    async def run() -> int | None:
        async with scratch_sessions(settings.database_url) as sessions:
            return await RollupCompactor(sessions).run_once()

    removed = asyncio.run(run())
    if removed is None:
        print("another process is compacting the rollups now (its lock is held): nothing done")
        return 1
    print(f"rollup rows folded away: {removed}")
    return 0


def _summarise(settings: Settings) -> int:
    import asyncio

    from services.commission.orders.service import OrderService
    from shared.clock import SystemClock
    from shared.db import scratch_sessions

    async def run() -> int:
        service = OrderService(SystemClock(), settings.exit_policy)
        total = 0
        async with scratch_sessions(settings.database_url) as sessions:
            while True:
                async with sessions() as session, session.begin():
                    n = await service.summarise(session)
                total += n
                if n == 0:
                    return total

    print(f"orders summarised: {asyncio.run(run())}")
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from deploy.migrations import at_head, upgrade

    if args.check:
        try:
            ok = at_head(settings.database_url)
        except Exception as exc:  # any failure to read it: not known to be at head
            print(f"database not reachable: {exc!r}", file=sys.stderr)
            return 1
        print("database at head" if ok else "database not at head")
        return 0 if ok else 1
    upgrade(settings.database_url)
    print("database at head")
    return 0


def _topics(args: argparse.Namespace, settings: Settings) -> int:
    """Create the project's topics (ALLIANCE_TOPIC_PARTITIONS, ALLIANCE_TOPIC_REPLICATION) in
    the cluster ALLIANCE_KAFKA_BOOTSTRAP names, retrying while it is still electing leaders
    (a job started with the brokers); idempotent: existing topics are left as they are."""
    import asyncio
    import time

    from aiokafka.errors import KafkaError

    from deploy.stack import kafka
    from deploy.stack.orchestrate import topic_configs, topic_names

    topics = topic_names(settings)
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            asyncio.run(
                kafka.create_topics(
                    settings.kafka, topics, settings.topic_replication, topic_configs(settings)
                )
            )
            break
        except (KafkaError, OSError, kafka.KafkaStackError) as exc:
            if time.monotonic() > deadline:
                print(f"error: no topics within {args.timeout} s: {exc!r}", file=sys.stderr)
                return 1
            print(f"cluster not ready ({exc!r}); retrying", file=sys.stderr)
            time.sleep(2)
    if args.acls:
        from deploy.stack.acls import apply_acls

        count = asyncio.run(apply_acls(settings.kafka, settings.topic_prefix))
        print(f"{count} ACLs (deploy/stack/acls.py) for the services' principals")
    print(
        f"{len(topics)} topics, {settings.topic_partitions} partitions each, "
        f"replication {settings.topic_replication}"
    )
    return 0


def _compose_env(args: argparse.Namespace, _: Settings) -> int:
    from pathlib import Path

    from deploy.compose_env import ENV_FILE, TLS_DIR, write_env_file, write_tls

    path = Path(args.path) if args.path else ENV_FILE
    if write_env_file(path):
        print(f"wrote {path} with fresh secrets (keep it private; never regenerate it)")
    else:
        print(f"{path} exists; left as it is")
    tls = Path(args.tls) if args.tls else TLS_DIR
    if write_tls(tls):
        print(f"wrote the Kafka CA and broker certificates in {tls}")
    else:
        print(f"{tls}/ca.crt exists; left as it is")
    return 0


def _admin(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import json

    from pydantic import BaseModel, ValidationError

    from services.commission.admin.schemas import CreateAffiliate, CreateFinanceUser, CreateStore
    from services.commission.admin.service import AdminService
    from shared.clock import SystemClock
    from shared.db import scratch_sessions
    from shared.http import AllianceError

    kind: PrincipalKind = ADMIN_KINDS[args.action]
    name = args.name or args.id
    body: BaseModel | None = None
    try:  # the same checks as the admin API (ids, the landing URL template)
        if args.action == "create-store":
            if not args.landing_url:
                print(
                    "create-store needs --landing-url (e.g. https://shop.example/item/{product_id})"
                )
                return 2
            body = CreateStore(store_id=args.id, name=name, landing_url_template=args.landing_url)
        elif args.action == "create-affiliate":
            body = CreateAffiliate(affiliate_id=args.id, name=name)
        elif args.action == "create-finance-user":
            body = CreateFinanceUser(user_id=args.id)
    except ValidationError as exc:
        for error in exc.errors():
            print(f"error: {'.'.join(map(str, error['loc']))}: {error['msg']} ({error['type']})")
        return 2

    async def run() -> dict[str, str]:
        async with (
            scratch_sessions(settings.database_url) as sessions,
            sessions() as session,
            session.begin(),
        ):
            admin = AdminService(settings.secret_key, settings.topic_prefix)
            now = SystemClock().now()
            if body is None:  # a key rotation
                return {
                    "id": args.id,
                    "api_key": await admin.rotate_key(session, kind, args.id, now),
                }
            keys = await admin.create(session, kind, args.id, name, now, args.landing_url)
            return {"id": args.id, **keys}

    try:
        created = asyncio.run(run())
    except AllianceError as exc:
        print(f"error: {exc.message} ({exc.code})")
        return 1
    print(json.dumps(created, indent=2))
    if body is None:
        print("the old key no longer works; the commission service tells the tracker")
    else:
        print("keys are shown once; the commission service publishes the new principal")
    return 0


def _privacy(args: argparse.Namespace, settings: Settings) -> int:
    """``alliance privacy erase|export VISITOR``: the admin API's erasure and export, from the
    command line (the erasure in the audit record, as the command line's admin)."""
    import asyncio
    import json

    from pydantic import TypeAdapter, ValidationError

    from services.commission.audit.service import AuditService
    from services.commission.core.audit import Actor, Origin, Role
    from services.commission.privacy.service import PrivacyService
    from shared.clock import SystemClock
    from shared.db import scratch_sessions
    from shared.events import Ident

    try:  # the same check as the admin API's path
        visitor = TypeAdapter(Ident).validate_python(args.visitor)
    except ValidationError:
        print("error: a visitor id is 1 to 64 of [A-Za-z0-9._:@-] (invalid_request)")
        return 2

    async def run() -> dict[str, object]:
        async with (
            scratch_sessions(settings.database_url) as sessions,
            sessions() as session,
            session.begin(),
        ):
            clock = SystemClock()
            privacy = PrivacyService(settings.secret_key, settings.topic_prefix, clock)
            if args.action == "export":
                return await privacy.export(session, visitor)
            trail = AuditService(clock, sessions).trail(
                session, Actor(Role.ADMIN, "admin"), Origin(None, "alliance-cli", None)
            )
            alias, already, counts = await privacy.erase(session, visitor, trail)
            return {"visitor_pseudonym": alias, "already_erased": already, "erased": counts}

    print(json.dumps(asyncio.run(run()), indent=2, default=str))
    return 0


#: ``alliance admin <action>``: the kind of principal each action is about
ADMIN_KINDS: dict[str, PrincipalKind] = {
    "create-store": "store",
    "create-affiliate": "affiliate",
    "create-finance-user": "finance",
    "rotate-store-key": "store",
    "rotate-affiliate-key": "affiliate",
    "rotate-finance-key": "finance",
}


def _dlq(args: argparse.Namespace, settings: Settings) -> int:
    """``alliance dlq list [--consumer C]`` / ``replay --consumer C [--since TIME]``."""
    import asyncio
    from collections import Counter

    from shared.dlq import replay, unique_letters
    from shared.events import Topic
    from shared.kafka import make_producer, read_topic

    since = None
    if args.since:
        since = _parse_time(args.since)
        if since is None:
            print(f"error: --since {args.since!r} is not an ISO 8601 time", file=sys.stderr)
            return 2
    if args.action == "replay" and not args.consumer:
        print("error: replay needs --consumer (see `alliance dlq list`)", file=sys.stderr)
        return 2
    values = asyncio.run(read_topic(settings.kafka, settings.topic(Topic.DEAD_LETTERS)))
    letters = [
        d
        for d in unique_letters(values)
        if (args.consumer is None or d.consumer == args.consumer)
        and (since is None or d.failed_at >= since)
    ]
    if args.action == "list":
        for d in letters:
            where = f"{d.source_topic}[{d.partition}]@{d.offset}"
            cut = " (truncated)" if d.truncated else ""
            print(f"{d.failed_at.isoformat()}  {d.consumer:20} {where:40} key={d.key}{cut}")
            print(f"    {' '.join(d.reason.split())[:300]}")
        counts = Counter((d.consumer, d.error or "?") for d in letters)
        print(f"dead letters: {len(letters)}")
        for (consumer, error), n in sorted(counts.items()):
            print(f"  {consumer:20} {error:40} {n}")
        return 0

    async def run() -> tuple[int, int]:
        producer = make_producer(settings.kafka, client_id="alliance-dlq-replay")
        await producer.start()
        try:
            done = await replay(producer, letters)
        finally:
            await producer.stop()
        for d in done.skipped:
            print(
                f"skipped (truncated: the original is not in the letter): {d.source_topic}"
                f"[{d.partition}]@{d.offset}"
            )
        return len(done.sent), len(done.skipped)

    sent, skipped = asyncio.run(run())
    print(
        f"replayed {sent} dead letters of {args.consumer} to their source topics; skipped {skipped}"
    )
    return 0


def _parse_time(text: str) -> datetime | None:
    """An ISO 8601 time (``Z`` allowed), UTC when it names no zone; None if it is none."""
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    from functools import partial

    from deploy.demo.live import run_demo
    from deploy.demo.quarter import run_quarter

    out = Path(args.out) if args.out else None
    quarter = None if args.no_quarter else partial(run_quarter, settings)
    return asyncio.run(run_demo(settings, orders=args.orders, out_dir=out, quarter=quarter))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alliance", description="Alliance affiliate platform")
    sub = parser.add_subparsers(dest="command", required=True)
    stack = sub.add_parser("stack", help="the project's own Kafka and PostgreSQL")
    stack.add_argument("action", choices=["up", "down", "status"])
    backup = sub.add_parser(
        "backup", help="a verified pg_basebackup of the stack's PostgreSQL (docs/backups.md)"
    )
    backup.add_argument("dir", help="a new folder for the backup")
    backup.add_argument("--format", choices=["plain", "tar"], default="plain")
    restore = sub.add_parser(
        "restore", help="start a fresh PostgreSQL cluster from a backup (docs/backups.md)"
    )
    restore.add_argument("dir", help="the backup's folder")
    restore.add_argument(
        "--data-dir",
        required=True,
        help="a new folder for the cluster (data in DATA_DIR/data, log and socket beside it)",
    )
    restore.add_argument("--port", type=int, required=True, help="its port on 127.0.0.1")
    services = sub.add_parser("services", help="run the three services in the background")
    services.add_argument("action", choices=["start", "stop", "status"])
    for name in SERVICES:
        service = sub.add_parser(name, help=f"run the {name} service (foreground)")
        if name == "attribution":
            service.add_argument(
                "action",
                nargs="?",
                choices=["rebuild", "expire"],
                help="instead of serving: recompute and compare decisions, or delete expired "
                "clicks once",
            )
            service.add_argument("--from", dest="since", help="ISO 8601 time (rebuild)")
    ledger = sub.add_parser("ledger", help="check the ledger's invariants")
    ledger.add_argument(
        "action",
        choices=["verify", "summarise", "compact"],
        help="check the invariants, compute the settlement summary of orders that have none, "
        "or fold the per-day rollups' rows of past days into one per key",
    )
    migrate = sub.add_parser("migrate", help="apply the database migrations")
    migrate.add_argument(
        "--check",
        action="store_true",
        help="only say whether the database is at head (exit status 1 when not): the Helm "
        "chart's pods wait on it",
    )
    topics = sub.add_parser("topics", help="create the topics (partitions, replication)")
    topics.add_argument("--timeout", type=float, default=120, help="seconds to retry")
    topics.add_argument(
        "--acls",
        action="store_true",
        help="also create each service's ACLs (deploy/stack/acls.py; needs the admin principal)",
    )
    compose_env = sub.add_parser(
        "compose-env", help="write deploy/.env with fresh secrets for the compose stack"
    )
    compose_env.add_argument("--path", help="another file than deploy/.env")
    compose_env.add_argument("--tls", help="another folder than deploy/tls for the Kafka CA")
    admin = sub.add_parser(
        "admin", help="create stores, affiliates and finance users; rotate (revoke) their keys"
    )
    admin.add_argument("action", choices=list(ADMIN_KINDS))
    admin.add_argument("id", help="the store, affiliate or user id")
    admin.add_argument("--name", help="display name (default: the id)")
    admin.add_argument("--landing-url", help="a store's landing URL template with {product_id}")
    privacy = sub.add_parser(
        "privacy", help="erase a visitor's data, or export it (docs/privacy.md)"
    )
    privacy.add_argument("action", choices=["erase", "export"])
    privacy.add_argument("visitor", help="the visitor id (alliance_vid)")
    retention = sub.add_parser(
        "retention",
        help="create day partitions ahead, drop those past their retention, expire old "
        "idempotency records and webhook deliveries (docs/retention.md)",
    )
    retention.add_argument("action", choices=["run"])
    dlq = sub.add_parser(
        "dlq", help="list dead letters, or replay a consumer's to their source topics"
    )
    dlq.add_argument("action", choices=["list", "replay"])
    dlq.add_argument("--consumer", help="only this consumer's letters (required by replay)")
    dlq.add_argument("--since", help="only letters written since this ISO 8601 time")
    demo = sub.add_parser(
        "demo",
        help="a live run through the running services, then a realistic quarter replayed",
    )
    demo.add_argument("--orders", type=int, default=12)
    demo.add_argument(
        "--no-quarter", action="store_true", help="only the live run, not the quarter's replay"
    )
    demo.add_argument(
        "--out",
        help="where the live run's payout files go (default: the state folder's demo/)",
    )
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
    except ValidationError as exc:  # e.g. a retention shorter than its rule: said, no traceback
        for error in exc.errors():
            where = "ALLIANCE_" + "_".join(map(str, error["loc"])).upper()
            print(
                f"error: settings: {error['msg']}" + (f" ({where})" if error["loc"] else ""),
                file=sys.stderr,
            )
        return 2
    # one JSON (production) or text (dev) line per record, redacted, for every command
    logs.configure_from(settings, args.command if args.command in SERVICES else "cli")
    handlers: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
        "stack": _stack,
        "backup": _backup,
        "restore": _restore,
        "services": _services,
        "migrate": _migrate,
        "topics": _topics,
        "compose-env": _compose_env,
        "demo": _demo,
        "admin": _admin,
        "ledger": _ledger,
        "dlq": _dlq,
        "privacy": _privacy,
        "retention": _retention,
    }
    if args.command == "attribution" and args.action == "rebuild":
        return _rebuild(args, settings)
    if args.command == "attribution" and args.action == "expire":
        return _expire(settings)
    if args.command in SERVICES:
        return _serve(args.command, settings)
    return handlers[args.command](args, settings)


if __name__ == "__main__":
    sys.exit(main())
