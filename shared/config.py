"""Configuration: environment variables with the ``ALLIANCE_`` prefix
(docs/configuration.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.clickcap import DEFAULT_CAP_PER_DAY
from shared.policy import ExitPolicy
from shared.ratelimit import Quota

REPO_ROOT = Path(__file__).resolve().parents[1]

#: The development values of the deployment secrets: the defaults below, known to anyone who
#: reads this file. ``ALLIANCE_ENV=production`` (the default) refuses to start with them.
DEV_SECRET_KEY = "dev-only-secret-key-change-me"
DEV_ADMIN_TOKEN = "dev-only-admin-token"
DEV_LINK_KEYS = "k1:dev-only-link-key-change-me"
#: the shortest secret production accepts (characters): 32 random characters are ~190 bits
MIN_SECRET_CHARS = 32


class InsecureSettings(RuntimeError):
    """The deployment would start with a development or weak secret, or trusting any peer's
    ``X-Forwarded-For``, in production. The message names every offending environment
    variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "refusing to start with ALLIANCE_ENV=production: "
            + "; ".join(problems)
            + " (set real secrets and trusted proxies, or ALLIANCE_ENV=dev for development)"
        )


KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


@dataclass(frozen=True)
class KafkaConnection:
    """How a Kafka client of the project reaches the cluster: its bootstrap servers and the
    connection's security (``security`` holds aiokafka's keyword arguments: the protocol,
    SASL, the TLS context). Every client takes its address only through
    :meth:`client_options` (tests/shared/test_kafka_security.py checks the source), so no
    client speaks PLAINTEXT to a cluster that wants TLS or SASL. ``security`` may hold the
    SASL password: it is left out of the repr."""

    bootstrap: str
    security: Mapping[str, Any] = field(repr=False)

    def client_options(self) -> dict[str, Any]:
        """The keyword arguments of ``AIOKafkaProducer``/``AIOKafkaConsumer``/
        ``AIOKafkaAdminClient`` that say where and how to connect."""
        return {"bootstrap_servers": self.bootstrap, **self.security}


class Settings(BaseSettings):
    """Every knob of every service. Read once per process (:func:`get_settings`)."""

    # hide_input_in_errors: a validation error would otherwise show the SASL password
    model_config = SettingsConfigDict(
        env_prefix="ALLIANCE_", extra="ignore", hide_input_in_errors=True
    )

    env: Literal["dev", "production"] = Field(
        "production",
        description="dev (make demo, the tests, the benches) or production, which refuses to "
        "start with a development, missing or short secret",
    )
    log_format: Literal["json", "text"] | None = Field(
        None,
        description="json (one JSON object per line, for a log collector) or text (for a "
        "terminal); unset: json with ALLIANCE_ENV=production, text with dev",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="The least severe log records written: DEBUG, INFO, WARNING or ERROR"
    )
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers")
    kafka_security_protocol: KafkaSecurityProtocol = Field(
        "PLAINTEXT",
        description="How every Kafka client connects: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or "
        "SASL_SSL (SASL over TLS: what managed Kafka services want)",
    )
    kafka_sasl_mechanism: KafkaSaslMechanism | None = Field(
        None, description="SASL mechanism of the SASL_* protocols: PLAIN, SCRAM-SHA-256 or -512"
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name")
    kafka_sasl_password: SecretStr | None = Field(
        None, description="SASL password (a secret: never logged or shown)"
    )
    kafka_ssl_cafile: Path | None = Field(
        None,
        description="CA bundle (PEM) that signs the brokers' certificates, for SSL and "
        "SASL_SSL (default: the system's CAs)",
    )
    kafka_ssl_certfile: Path | None = Field(
        None, description="Client certificate (PEM) for mutual TLS (SSL and SASL_SSL)"
    )
    kafka_ssl_keyfile: Path | None = Field(
        None, description="Private key (PEM) of ALLIANCE_KAFKA_SSL_CERTFILE, if not in it"
    )
    database_url: str = Field(
        "postgresql+asyncpg://alliance:alliance@127.0.0.1:5432/alliance",
        description="SQLAlchemy URL of the PostgreSQL database",
    )
    database_password: SecretStr | None = Field(
        None,
        description="The database password when it is kept apart from ALLIANCE_DATABASE_URL "
        "(an operator's Secret): it replaces the URL's own, escaped, so any character works",
    )
    topic_prefix: str = Field("", description="Prefix for every topic name (tests use one each)")
    topic_partitions: int = Field(6, description="Partitions of each topic the project creates")
    topic_replication: int = Field(1, description="Replication factor of created topics")

    tracker_port: int = 8001
    attribution_port: int = 8002
    commission_port: int = 8003
    host: str = Field("127.0.0.1", description="Address the HTTP services bind")
    metrics_host: str = Field(
        "127.0.0.1", description="Address the separate /metrics listener binds (never public)"
    )
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Port of a separate /metrics listener; when set, the public port answers "
        "/metrics with 404 (unset: /metrics stays on the public port, for development)",
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="When set, /metrics answers only `Authorization: Bearer <token>` (401 "
        "otherwise), on whichever port serves it",
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1",
        description="Proxies trusted to set X-Forwarded-For/-Proto (the client address that "
        "click quality sees): addresses and CIDRs, comma-separated; `*` (any peer) is refused "
        "in production",
    )

    # What one caller may cost (shared.limits): '<requests>/<seconds>' per process, 'off'
    rate_limit_public: str = Field(
        "120/60",
        description="Requests per client address on routes without credentials (the camp, "
        "the docs), '<requests>/<seconds>' (all of them at once at most) or 'off'",
    )
    rate_limit_key: str = Field(
        "1200/60", description="Requests per API key (Authorization: Bearer), or 'off'"
    )
    rate_limit_store: str = Field(
        "600/60",
        description="Storefront-signed requests (POST /v1/events, /v1/clicks) per store, or 'off'",
    )
    rate_limit_redirect: str = Field(
        "6000/60",
        description="Click redirects (GET /r/{code}) per client address, or 'off' (generous: "
        "a flood is marked suspicious, not refused, below it)",
    )
    rate_limit_max_keys: int = Field(
        100_000, description="Most callers whose quota use one process remembers"
    )
    statement_timeout_s: float = Field(
        2.0,
        gt=0,
        description="Longest time one SQL statement of an API request may run (SET LOCAL "
        "statement_timeout); past it the answer is 503 statement_timeout with Retry-After. "
        "Not applied to the consumers",
    )

    secret_key: str = Field(
        DEV_SECRET_KEY,
        description="Deployment secret from which stores' webhook secrets are derived",
    )
    admin_token: str = Field(
        DEV_ADMIN_TOKEN, description="Bearer token of the admin API (create principals)"
    )
    secret_rotation_grace_s: int = Field(
        86400,
        ge=0,
        description="How long after rotate-secret a store's previous webhook secret still "
        "verifies (0: refused at once, like rotate-secret?revoke_previous=true)",
    )
    event_max_age_s: int = Field(300, description="Refuse storefront signatures older than this")
    dedup_horizon_hours: int = Field(24, description="How long the tracker remembers event ids")
    event_max_backdate_days: int = Field(
        90,
        description="The tracker refuses storefront events and server clicks whose occurred_at "
        "is more than this many days ago (or more than 5 minutes ahead)",
    )
    flood_clicks_per_minute: int = Field(
        10,
        description="More clicks than this from one visitor or IP on one link in a minute "
        "are marked suspicious",
    )
    spool_dir: Path | None = Field(
        None, description="Click spool for when Kafka is slow or down (default: state_dir/spool)"
    )
    spool_max_bytes: int = Field(256 * 1024 * 1024, description="Bound of the click spool")
    link_keys: str = Field(
        DEV_LINK_KEYS,
        description="Link-signing keys 'id:secret,id:secret'; the first signs, all verify",
    )
    landing_url_template: str = Field(
        "https://{store_id}.shop.example/item/{product_id}",
        description="Landing URL of a link until stores carry their own template",
    )
    store_url_template: str = Field(
        "https://{store_id}.shop.example/", description="Landing URL of a link without a product"
    )
    click_ack_timeout_ms: int = Field(
        250, description="How long the redirect waits for Kafka to acknowledge a click"
    )

    # The tracker's reliability and bounded memory: how long a storefront post waits for
    # Kafka, the snapshot it starts from without Kafka, and the bounds of its memories.
    event_ack_timeout_ms: int = Field(
        5000,
        description="How long POST /v1/events waits for Kafka to acknowledge its events before "
        "it answers 503 with Retry-After (what was not acknowledged is sent on the retry)",
    )
    tracker_snapshot_dir: Path | None = Field(
        None,
        description="Where the tracker keeps its snapshot of the directory and catalog, to "
        "start while Kafka is down (default: state_dir/tracker)",
    )
    tracker_snapshot_interval_s: float = Field(
        10, description="How often (at most) the tracker rewrites its snapshot when it changed"
    )
    tracker_sweep_interval_s: float = Field(
        10,
        description="How often the tracker forgets expired flood counters, self-referral "
        "addresses and event ids (they also expire as they are used)",
    )
    flood_max_keys: int = Field(
        1_000_000,
        description="Most flood counters ((link, visitor) and (link, address)) the tracker "
        "keeps, ~100 bytes each; past it, the older minute is forgotten early",
    )
    self_referral_max_keys: int = Field(
        200_000,
        description="Most (affiliate, address) pairs the self-referral check remembers, ~100 "
        "bytes each; past it, the older day is forgotten early",
    )
    dedup_max_ids: int = Field(
        1_000_000,
        description="Most storefront event ids the tracker remembers, ~100 bytes each; past "
        "it, the oldest hour is forgotten before the horizon (consumers deduplicate anyway)",
    )

    @property
    def tracker_snapshot_path(self) -> Path:
        """The snapshot of this deployment's topics (their prefix names the file)."""
        folder = self.tracker_snapshot_dir or self.state_dir / "tracker"
        return folder / f"{self.topic_prefix}directory.json"

    attribution_window_days: int = Field(
        15, description="Default attribution window (a program may set its own, 1-30 days)"
    )
    click_cap_per_day: int = Field(
        DEFAULT_CAP_PER_DAY,
        ge=1,
        description="Clicks one visitor, or one client address, may store per link per UTC day "
        "(attribution and the reports); the rest are counted, not stored",
    )
    click_expiry_interval_s: float = Field(
        3600, description="How often attribution deletes clicks no order can use (0: never)"
    )
    privacy_full_address_hours: int = Field(
        24,
        ge=1,
        description="Clients' addresses are kept in full at rest (the click cap's counts) only "
        "until their UTC day is over by this long, then cut to their network (IPv4 /24, "
        "IPv6 /48); default: the self-referral memory (a day; the flood window is a minute)",
    )
    privacy_minimise_interval_s: float = Field(
        3600,
        description="How often attribution and the reports cut addresses past "
        "ALLIANCE_PRIVACY_FULL_ADDRESS_HOURS (0: never)",
    )
    product_refresh_interval_s: float = Field(
        300,
        description="How often the commission service re-ranks the affiliate product channel "
        "(hot products, 90-day affiliate orders); program changes re-rank their store at once",
    )
    rollup_compact_interval_s: float = Field(
        60,
        ge=0,
        description="How often the commission service folds the settlement and statement "
        "rollups' fresh rows (one replica at a time; 0: never, leave it to "
        "`alliance ledger compact`)",
    )
    attribution_grace_s: int = Field(
        600,
        description="How long (wall time) after its first decision an order's attribution "
        "stays open to late clicks, unless it completes first",
    )
    attribution_max_hold_s: float = Field(
        60,
        description="How long (wall time) an order may wait for its visitor's clicks partition "
        "to be read up to where it ended when the order was read, before it is decided anyway",
    )
    exit_policy: ExitPolicy = Field(
        ExitPolicy.PLACED_IN_PROGRAM,
        description="Which orders of an exited store are chargeable (placed_in_program | "
        "click_in_program)",
    )

    webhook_allow_private: bool | None = Field(
        None,
        description="Whether webhook endpoints may target loopback, private, link-local or "
        "reserved addresses (checked at registration and, resolved, at each delivery); unset: "
        "allowed with ALLIANCE_ENV=dev, refused in production",
    )
    webhook_delivery: bool = Field(
        True,
        description="Whether this commission process runs the webhook delivery worker (off: "
        "deliveries are written and wait for a process that runs it)",
    )
    webhook_timeout_s: float = Field(
        10.0, description="How long a webhook delivery waits for the receiver's answer"
    )
    webhook_interval_s: float = Field(
        1.0, description="How often the webhook worker looks for due deliveries (at most)"
    )
    webhook_slots: int = Field(
        32, ge=1, le=1024, description="Webhook attempts one delivery worker has in flight at once"
    )
    webhook_endpoint_concurrency: int = Field(
        2,
        ge=1,
        le=64,
        description="Webhook attempts in flight at once to one endpoint, across all workers "
        "(one while it is failing)",
    )
    webhook_owner_share: int = Field(
        8,
        ge=1,
        le=1024,
        description="Of a delivery worker's slots, how many one owner's endpoints may hold",
    )
    webhook_lease_s: float | None = Field(
        None,
        gt=0,
        description="How long a worker's claim of a delivery lasts (a worker that dies leaves "
        "it due again then); unset: the attempt's deadline plus 30 s; must exceed the deadline",
    )

    @property
    def webhooks_may_target_private(self) -> bool:
        """:attr:`webhook_allow_private`, else whether this is a development deployment."""
        if self.webhook_allow_private is not None:
            return self.webhook_allow_private
        return self.env == "dev"

    payout_holding_days: int = Field(
        0, description="Commission is payable once its order completed this many days ago"
    )
    payer_name: str = Field(
        "Alliance Marketplace Ltd",
        description="The platform as the debtor of payment files and payer of invoices",
    )
    payer_iban: str = Field(
        "DE89370400440532013000", description="The account payout runs pay from (pain.001)"
    )
    payer_bic: str = Field("COBADEFFXXX", description="The BIC of ALLIANCE_PAYER_IBAN's bank")
    payer_address: str = Field(
        "1 Example Street, 10115 Berlin, Germany",
        description="The payer's address on self-billing invoices",
    )
    payer_tax_id: str = Field(
        "DE000000000", description="The payer's tax (VAT) id on self-billing invoices"
    )
    lock_sweep_interval_s: float = Field(
        60,
        gt=0,
        description="How often the commission service writes commission.locked events for "
        "orders whose locking date has passed",
    )
    payout_requires_lock: bool = Field(
        False,
        description="A payout pays only commission whose order's locking date has passed "
        "(docs/program-controls.md); false: the holding period alone decides",
    )
    consumer_batch_size: int = Field(
        4000, description="Max records a consumer handles per batch (one transaction)"
    )
    consumer_batch_ms: int = Field(200, description="Max wait to fill a consumer batch")
    dlq_max_ratio: float = Field(
        0.5,
        description="A consumer stops a partition rather than dead-letter more than this share "
        "of its last ALLIANCE_DLQ_WINDOW records",
    )
    dlq_max_consecutive: int = Field(
        50,
        description="A consumer stops a partition rather than dead-letter more than this many "
        "of its records in a row (0: no such limit)",
    )
    dlq_window: int = Field(
        200,
        description="How many of a partition's latest records the dead-letter ratio is taken "
        "over (judged once a partition has had that many)",
    )
    consumer_retry_max_s: float = Field(
        5.0,
        description="Longest pause between two tries of a batch that failed for a transient "
        "reason (database or broker away); the pauses double from 0.1 s up to it",
    )

    # Data lifecycle (docs/retention.md): how long each growing table and the topics keep data
    retention_clicks_days: int = Field(
        61,
        ge=1,
        description="Days of clicks kept (attribution's and the reports'): whole day partitions "
        "are dropped past it; at least twice the widest attribution window plus the grace",
    )
    retention_topic_hours: int = Field(
        168,
        ge=1,
        description="Kafka retention (retention.ms) of the event topics, set by `alliance stack "
        "up`, the compose topics job and the Helm chart (the compacted ones keep their keys)",
    )
    retention_idempotency_days: int = Field(
        14,
        ge=1,
        description="Days of idempotency records (applied events, seen page views) kept: at "
        "least ALLIANCE_RETENTION_TOPIC_HOURS plus a day, so no replayable event is applied twice",
    )
    retention_reports_days: int = Field(
        775,
        ge=1,
        description="Days of the reports' visitor-days kept (about 25 months)",
    )
    retention_webhooks_days: int = Field(
        30,
        ge=1,
        description="Days finished webhook deliveries (delivered or given up) are kept",
    )
    retention_partitions_ahead_days: int = Field(
        7,
        ge=1,
        le=366,
        description="Day partitions created ahead of today (the job must run at least once in "
        "this many days, or writes for later days land in the default partition)",
    )
    retention_interval_s: float = Field(
        3600,
        ge=0,
        description="How often the commission and attribution services run the retention job "
        "(create partitions ahead, drop expired ones; one replica at a time; 0: never, leave it "
        "to `alliance retention run`)",
    )

    @model_validator(mode="after")
    def _retention_is_safe(self) -> Settings:
        """Retention shorter than what the rules need is refused at start (docs/retention.md)."""
        from shared.retention import retention_problems

        if problems := retention_problems(self):
            raise ValueError("; ".join(problems))
        return self

    state_dir: Path = Field(REPO_ROOT / ".stack", description="Where `stack up` keeps data/logs")
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    postgres_port: int = 5432

    @field_validator(
        "rate_limit_public", "rate_limit_key", "rate_limit_store", "rate_limit_redirect"
    )
    @classmethod
    def _a_rate_limit(cls, value: str) -> str:
        """A limit that does not parse stops the service at start, not at the first request."""
        Quota.parse("check", value)
        return value

    @field_validator(
        "kafka_sasl_mechanism",
        "kafka_sasl_username",
        "kafka_sasl_password",
        "kafka_ssl_cafile",
        "kafka_ssl_certfile",
        "kafka_ssl_keyfile",
        "database_password",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """An empty variable is an unset one (a compose file passes ``${VAR:-}`` through;
        an empty path would otherwise be the current directory)."""
        return None if value == "" else value

    @model_validator(mode="after")
    def _database_password_into_the_url(self) -> Settings:
        if self.database_password is not None:
            from sqlalchemy.engine import make_url

            url = make_url(self.database_url).set(
                password=self.database_password.get_secret_value()
            )
            self.database_url = url.render_as_string(hide_password=False)
        return self

    @model_validator(mode="after")
    def _kafka_security_is_whole(self) -> Settings:
        """SASL needs its mechanism and credentials; SASL or TLS settings without a protocol
        that uses them are a mistake (the clients would silently speak without them)."""
        protocol = self.kafka_security_protocol
        sasl = {
            "ALLIANCE_KAFKA_SASL_MECHANISM": self.kafka_sasl_mechanism,
            "ALLIANCE_KAFKA_SASL_USERNAME": self.kafka_sasl_username,
            "ALLIANCE_KAFKA_SASL_PASSWORD": self.kafka_sasl_password,
        }
        tls = {
            "ALLIANCE_KAFKA_SSL_CAFILE": self.kafka_ssl_cafile,
            "ALLIANCE_KAFKA_SSL_CERTFILE": self.kafka_ssl_certfile,
            "ALLIANCE_KAFKA_SSL_KEYFILE": self.kafka_ssl_keyfile,
        }
        if protocol.startswith("SASL_"):
            if missing := [name for name, value in sasl.items() if not value]:
                raise ValueError(
                    f"ALLIANCE_KAFKA_SECURITY_PROTOCOL={protocol} needs {', '.join(missing)}"
                )
        elif given := [name for name, value in sasl.items() if value]:
            raise ValueError(
                f"{', '.join(given)} set, but ALLIANCE_KAFKA_SECURITY_PROTOCOL={protocol} does "
                "not use SASL (SASL_SSL or SASL_PLAINTEXT does)"
            )
        if not protocol.endswith("SSL") and (given := [n for n, v in tls.items() if v]):
            raise ValueError(
                f"{', '.join(given)} set, but ALLIANCE_KAFKA_SECURITY_PROTOCOL={protocol} does "
                "not use TLS (SSL or SASL_SSL does)"
            )
        if self.kafka_ssl_keyfile and not self.kafka_ssl_certfile:
            raise ValueError("ALLIANCE_KAFKA_SSL_KEYFILE needs ALLIANCE_KAFKA_SSL_CERTFILE")
        return self

    def kafka_security(self) -> dict[str, Any]:
        """aiokafka's keyword arguments for the configured connection security: the protocol,
        the SASL mechanism and credentials (SASL_*), the TLS context (SSL, SASL_SSL: the
        configured CA file or the system's CAs, the client certificate if any; host names are
        checked). Raises :class:`ValueError` naming the variable whose file cannot be read."""
        from aiokafka.helpers import create_ssl_context

        options: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        password = self.kafka_sasl_password
        if self.kafka_security_protocol.startswith("SASL_") and password is not None:
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            options["sasl_plain_password"] = password.get_secret_value()
        if self.kafka_security_protocol.endswith("SSL"):
            try:
                options["ssl_context"] = create_ssl_context(
                    cafile=self.kafka_ssl_cafile,
                    certfile=self.kafka_ssl_certfile,
                    keyfile=self.kafka_ssl_keyfile,
                )
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise ValueError(
                    "cannot build Kafka's TLS context from ALLIANCE_KAFKA_SSL_CAFILE="
                    f"{self.kafka_ssl_cafile}, ALLIANCE_KAFKA_SSL_CERTFILE="
                    f"{self.kafka_ssl_certfile}, ALLIANCE_KAFKA_SSL_KEYFILE="
                    f"{self.kafka_ssl_keyfile}: {exc}"
                ) from exc
        return options

    @property
    def kafka(self) -> KafkaConnection:
        """The cluster of ``kafka_bootstrap`` with the configured security: what every Kafka
        client of the project is built from."""
        return KafkaConnection(self.kafka_bootstrap, self.kafka_security())

    @property
    def spool_path(self) -> Path:
        return self.spool_dir or self.state_dir / "spool"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def production_problems(self) -> list[str]:
        """What makes these settings unfit for production, one message per variable (empty:
        fit). Development defaults count as unset: they are public."""
        problems = []
        for variable, value, dev in (
            ("ALLIANCE_ADMIN_TOKEN", self.admin_token, DEV_ADMIN_TOKEN),
            ("ALLIANCE_SECRET_KEY", self.secret_key, DEV_SECRET_KEY),
        ):
            if problem := _secret_problem(value, dev):
                problems.append(f"{variable} {problem}")
        if not self.link_keys.strip() or self.link_keys == DEV_LINK_KEYS:
            problems.append("ALLIANCE_LINK_KEYS is unset or the development default")
        else:
            dev_secret = DEV_LINK_KEYS.partition(":")[2]
            for part in self.link_keys.split(","):
                kid, _, secret = part.strip().partition(":")
                if problem := _secret_problem(secret, dev_secret):
                    problems.append(f"ALLIANCE_LINK_KEYS key {kid!r} {problem}")
        if trusts_any_proxy(self.forwarded_allow_ips):
            problems.append(
                "ALLIANCE_FORWARDED_ALLOW_IPS is '*': any peer could choose the client address "
                "(X-Forwarded-For) that flood and self-referral checks see; list the ingress's "
                "addresses or CIDRs"
            )
        return problems

    def check_production(self) -> None:
        """Raise :class:`InsecureSettings` when ``env`` is production and a secret is unset,
        a development default or shorter than :data:`MIN_SECRET_CHARS`, or every peer is
        trusted to set ``X-Forwarded-For`` (``*``). Every service calls
        this before it starts; ``env=dev`` skips it."""
        if self.env == "production" and (problems := self.production_problems()):
            raise InsecureSettings(problems)


def trusts_any_proxy(forwarded_allow_ips: str) -> bool:
    """Whether a ``forwarded_allow_ips`` value trusts every peer (``*`` among its entries):
    behind an ingress that appends to ``X-Forwarded-For`` the client then picks the address
    the services see, as uvicorn takes the header's leftmost entry."""
    return any(part.strip() == "*" for part in forwarded_allow_ips.split(","))


def _secret_problem(value: str, dev: str) -> str | None:
    if not value.strip() or value == dev:
        return "is unset or the development default"
    if len(value) < MIN_SECRET_CHARS:
        return f"is shorter than {MIN_SECRET_CHARS} characters"
    return None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
