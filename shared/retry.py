"""Bad luck or bad data: which failures are retried, and how long to wait between tries.

A *transient* failure is one of the outside world — PostgreSQL down, restarting, in recovery
or out of connections, a serialization failure or a deadlock, the Kafka broker unreachable or
without a leader, a timeout. Retrying the same work later succeeds. Anything else is taken to
be caused by the data in hand (a poison record, or a bug that meets it), and retrying the same
work fails the same way: consumers isolate it and dead-letter it instead of retrying for ever.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

#: SQLSTATE classes of PostgreSQL that mean "try again later": connection exception (08),
#: transaction rollback — serialization failure, deadlock (40), insufficient resources (53),
#: operator intervention — shutdown, cannot connect now, cancelled (57), system error (58)
TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57", "58"})
#: the server's words for "not now" when no SQLSTATE reaches us (connection attempts)
TRANSIENT_MESSAGES = (
    "the database system is in recovery",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is not yet accepting connections",
    "terminating connection due to administrator command",
    "connection is closed",
    "connection was closed",
)
#: exception classes (by name, so that no driver needs importing here) that are transient
#: whatever their attributes say: the database and broker drivers' "connection gone" kinds
TRANSIENT_CLASS_NAMES = frozenset(
    {
        # SQLAlchemy (DBAPI wrappers and the pool)
        "OperationalError",
        "InterfaceError",
        "DisconnectionError",
        # asyncpg
        "PostgresConnectionError",
        "ConnectionDoesNotExistError",
        "ConnectionFailureError",
        "CannotConnectNowError",
        "AdminShutdownError",
        "CrashShutdownError",
        "SerializationError",
        "DeadlockDetectedError",
        "TooManyConnectionsError",
        # aiokafka (the rest of its retriable errors say so themselves: ``retriable``)
        "KafkaConnectionError",
        "KafkaTimeoutError",
        "NoBrokersAvailable",
        "NodeNotReadyError",
        "RequestTimedOutError",
        "NotLeaderForPartitionError",
        "LeaderNotAvailableError",
        "NotCoordinatorForGroupError",
        "GroupCoordinatorNotAvailableError",
        "ProducerClosed",
    }
)


class Transient(Exception):
    """Raised (``from`` the cause) to mark a failure as transient where its own type would not
    say so: e.g. a dead letter that could not be produced must never be dead-lettered."""


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: ``raise … from`` causes and SQLAlchemy's ``orig``. Not the
    implicit ``__context__``: an error raised while handling another is not that error."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        for inner in (e.__cause__, getattr(e, "orig", None)):
            if isinstance(inner, BaseException):
                todo.append(inner)


def is_transient(exc: BaseException) -> bool:
    """True when retrying the same work later may well succeed (see the module docstring).
    Pure: looks at the exception and what it wraps, never at the world. The innermost error
    that says anything decides: SQLAlchemy wraps asyncpg's client-side ``DataError`` (a value
    that cannot be encoded: bad data) as an ``InterfaceError`` (usually a lost connection)."""
    for e in reversed(list(_causes(exc))):
        verdict = _verdict(e)
        if verdict is not None:
            return verdict
    return False


#: SQLSTATE of a statement cancelled by ``statement_timeout`` (asyncpg's QueryCanceledError)
QUERY_CANCELED = "57014"


def sqlstate_in(exc: BaseException, state: str) -> bool:
    """True when ``exc`` or what it wraps (SQLAlchemy's ``orig``, causes) has SQLSTATE
    ``state``."""
    return any(
        (getattr(e, "sqlstate", None) or getattr(e, "pgcode", None)) == state for e in _causes(exc)
    )


def _verdict(e: BaseException) -> bool | None:
    if isinstance(e, Transient):
        return True
    state = getattr(e, "sqlstate", None) or getattr(e, "pgcode", None)
    if isinstance(state, str) and len(state) == 5:
        return state[:2] in TRANSIENT_SQLSTATE_CLASSES
    if isinstance(e, ValueError | TypeError | ArithmeticError | LookupError):
        return False  # a value the code or the database cannot take: the data's fault
    if isinstance(e, OSError | TimeoutError):
        return True
    kind = type(e)
    if any(k.__name__ in TRANSIENT_CLASS_NAMES for k in kind.__mro__):
        return True
    if getattr(e, "connection_invalidated", False):  # SQLAlchemy saw a disconnect
        return True
    if kind.__module__.startswith("aiokafka") and getattr(e, "retriable", False):
        return True
    text = str(e).lower()
    if any(m in text for m in TRANSIENT_MESSAGES):
        return True
    return None


def error_kind(exc: BaseException) -> str:
    """A short, stable name for what went wrong, for metrics and dead letters: the driver's
    own class where SQLAlchemy wrapped it (``UntranslatableCharacterError`` rather than
    ``DBAPIError``), else the exception's class."""
    orig = getattr(exc, "orig", None)
    inner = orig.__cause__ if orig is not None and orig.__cause__ is not None else orig
    return type(inner if inner is not None else exc).__name__


def describe(exc: BaseException, limit: int = 2000) -> str:
    """``"<kind>: <message>"`` of a failure, at most ``limit`` characters. For a database
    error, the driver's message without SQLAlchemy's statement and parameters (which repeat a
    whole batch's values)."""
    orig = getattr(exc, "orig", None)
    message = str(orig if orig is not None else exc).strip()
    return f"{error_kind(exc)}: {message}"[:limit]


@dataclass
class Backoff:
    """Capped exponential backoff: ``first``, twice that, … up to ``cap`` seconds; ``reset``
    after a success. Never sleeps itself (the caller waits, so that it can stop waiting)."""

    first: float = 0.1
    cap: float = 5.0
    _next: float = 0.0

    def next(self) -> float:
        """How long to wait before the next try."""
        self._next = min(max(self._next * 2, self.first), self.cap)
        return self._next

    def reset(self) -> None:
        self._next = 0.0
