"""Data lifecycle, the pure core: which day partitions to create ahead and which to drop, and
the rules the retention settings must satisfy (docs/retention.md).

No I/O and no clock: ``today`` is a parameter. The shell (:mod:`shared.retention_store`) reads
the partitions from PostgreSQL's catalog, asks :func:`plan` and does what it says.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final, Literal, Protocol

#: The widest attribution window a program may set (services/commission/core/program.py's
#: MAX_WINDOW_DAYS; tests/shared/test_retention.py keeps the two equal).
WIDEST_WINDOW_DAYS: Final = 30
#: Beyond the topics' retention, how long an idempotency record must outlive the event it
#: guards: a consumer may re-read its topic from an offset up to the retention back, and a
#: record written at the end of that time must still be there.
IDEMPOTENCY_MARGIN_HOURS: Final = 24

#: what a partition key is: a day's partition is [day, day + 1) in it
KeyKind = Literal["timestamptz", "date"]
#: which ALLIANCE_RETENTION_* setting a partitioned table's retention is
RetentionOf = Literal["clicks", "reports"]


@dataclass(frozen=True)
class PartitionedTable:
    """A table range-partitioned by day on ``column`` (migration 7a1e5c3d9b20)."""

    schema: str
    name: str
    column: str
    kind: KeyKind
    retention: RetentionOf

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def partition_name(self, day: date) -> str:
        """The name of ``day``'s partition (in the table's schema)."""
        return f"{self.name}_p{day:%Y%m%d}"

    @property
    def default_name(self) -> str:
        """The default partition: rows of days that have no partition (an old backdated
        click once its days were dropped; a day not created ahead in time)."""
        return f"{self.name}_default"


#: Every day-partitioned table, per schema (the service that owns it runs its job).
PARTITIONED: Final = (
    PartitionedTable("attribution", "clicks", "occurred_at", "timestamptz", "clicks"),
    PartitionedTable("commission", "report_clicks", "occurred_at", "timestamptz", "clicks"),
    PartitionedTable("commission", "visitor_days", "day", "date", "reports"),
)


@dataclass(frozen=True)
class Partition:
    """One partition as the catalog has it: rows with ``lower <= key < upper``, None being
    unbounded (MINVALUE/MAXVALUE: the legacy table attached whole); ``default`` takes the
    rows no other partition does."""

    name: str
    lower: date | None
    upper: date | None
    default: bool = False

    def overlaps(self, start: date, end: date) -> bool:
        """Whether it holds any key of [start, end)."""
        if self.default:
            return False
        return (self.lower is None or self.lower < end) and (
            self.upper is None or start < self.upper
        )


@dataclass(frozen=True)
class Plan:
    """What the job does to one table: create ``create`` (days), drop ``drop`` (partition
    names, whole: every row in them is older than the retention), and delete the default
    partition's rows older than ``cutoff`` (keys before it)."""

    create: tuple[date, ...]
    drop: tuple[str, ...]
    cutoff: date


def plan(partitions: Sequence[Partition], today: date, keep_days: int, ahead_days: int) -> Plan:
    """The partitions to create and drop so that every day of [today, today + ahead_days] has
    its own partition and none holds only days before ``today - keep_days``.

    Contract: a created day overlaps no partition (existing or created); a dropped partition
    is bounded above by the cutoff (no kept row is in it) and is never the default; days
    before ``today`` are never created (their rows went to the default partition, which a new
    partition of their range would have to scan and could conflict with). Planning again
    after the plan was carried out gives an empty plan (idempotent)."""
    if keep_days < 1 or ahead_days < 0:
        raise ValueError("keep_days must be >= 1 and ahead_days >= 0")
    cutoff = today - timedelta(days=keep_days)
    drop = tuple(
        sorted(
            p.name
            for p in partitions
            if not p.default and p.upper is not None and p.upper <= cutoff
        )
    )
    kept = [p for p in partitions if p.name not in drop]
    create = tuple(
        day
        for day in (today + timedelta(days=n) for n in range(ahead_days + 1))
        if not any(p.overlaps(day, day + timedelta(days=1)) for p in kept)
    )
    return Plan(create, drop, cutoff)


class RetentionSettings(Protocol):
    """The settings the rules read (shared.config.Settings has them)."""

    @property
    def retention_clicks_days(self) -> int: ...

    @property
    def retention_topic_hours(self) -> int: ...

    @property
    def retention_idempotency_days(self) -> int: ...

    @property
    def retention_reports_days(self) -> int: ...

    @property
    def attribution_window_days(self) -> int: ...

    @property
    def attribution_grace_s(self) -> int: ...


def clicks_minimum_days(widest_window_days: int, grace_s: int) -> int:
    """The shortest click retention the join may have: twice the widest window (a decision's
    explanation shows clicks up to a window before the window) plus the grace, in whole days."""
    return math.ceil((2 * widest_window_days * 86400 + grace_s) / 86400)


def retention_problems(s: RetentionSettings) -> list[str]:
    """Why these retention settings are unsafe, one message per rule broken (empty: safe)."""
    problems = []
    widest = max(WIDEST_WINDOW_DAYS, s.attribution_window_days)
    least = clicks_minimum_days(widest, s.attribution_grace_s)
    if s.retention_clicks_days < least:
        problems.append(
            f"ALLIANCE_RETENTION_CLICKS_DAYS={s.retention_clicks_days} is shorter than twice "
            f"the widest attribution window ({widest} days) plus the grace "
            f"(ALLIANCE_ATTRIBUTION_GRACE_S={s.attribution_grace_s}): at least {least}"
        )
    idempotency_hours = s.retention_idempotency_days * 24
    needed = s.retention_topic_hours + IDEMPOTENCY_MARGIN_HOURS
    if idempotency_hours < needed:
        problems.append(
            f"ALLIANCE_RETENTION_IDEMPOTENCY_DAYS={s.retention_idempotency_days} is shorter "
            f"than the topics' retention (ALLIANCE_RETENTION_TOPIC_HOURS="
            f"{s.retention_topic_hours}) plus {IDEMPOTENCY_MARGIN_HOURS} h: an event still on "
            f"a topic could be applied twice; at least {math.ceil(needed / 24)} days"
        )
    return problems


def keep_days(table: PartitionedTable, s: RetentionSettings) -> int:
    """The retention of ``table`` under these settings (days)."""
    return s.retention_clicks_days if table.retention == "clicks" else s.retention_reports_days


def tables_of(schemas: Iterable[str]) -> tuple[PartitionedTable, ...]:
    """The partitioned tables of ``schemas``, in :data:`PARTITIONED`'s order."""
    wanted = set(schemas)
    return tuple(t for t in PARTITIONED if t.schema in wanted)


#: Plain tables whose old rows the job deletes in chunks: (schema, table, time column); kept
#: ALLIANCE_RETENTION_IDEMPOTENCY_DAYS. Their key is an event id alone (a day partition's key
#: would have to hold the day, and a replay on another day would be applied again).
IDEMPOTENCY: Final = (
    ("commission", "processed_events", "processed_at"),
    ("commission", "seen_page_views", "seen_at"),
)


def parse_bound(expression: str) -> tuple[date | None, date | None, bool]:
    """A partition's bounds from ``pg_get_expr(relpartbound, oid)`` read with the session's
    time zone UTC: ``FOR VALUES FROM ('2026-12-06 00:00:00+00') TO (...)``, ``MINVALUE`` /
    ``MAXVALUE`` for open ends, or ``DEFAULT``. Returns (lower, upper, default)."""
    if expression.strip() == "DEFAULT":
        return None, None, True
    head, sep, tail = expression.partition(" TO ")
    if not sep or "FROM (" not in head:
        raise ValueError(f"not a range partition's bound: {expression!r}")

    def value(text: str) -> date | None:
        inner = text.strip().removeprefix("(").removesuffix(")").strip()
        if inner in ("MINVALUE", "MAXVALUE"):
            return None
        return date.fromisoformat(inner.strip("'")[:10])

    return value(head.split("FROM", 1)[1]), value(tail), False
