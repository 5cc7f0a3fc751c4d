"""Bad luck or bad data: which failures a consumer retries and which it isolates."""

from __future__ import annotations

import asyncpg.exceptions as pg
import pytest
import sqlalchemy.exc as sa
from aiokafka import errors as kafka
from asyncpg.exceptions._base import DataError as ClientDataError
from pydantic import BaseModel, ValidationError

from shared.retry import Backoff, Transient, describe, error_kind, is_transient


def wrapped(orig: BaseException, kind: type[sa.DBAPIError] = sa.DBAPIError) -> sa.DBAPIError:
    """As SQLAlchemy's asyncpg dialect raises it: the driver's error as ``orig``, its cause."""
    adapted = Exception(str(orig))
    adapted.__cause__ = orig
    error = kind("INSERT INTO t VALUES ($1)", ("x",), adapted)
    error.__cause__ = adapted
    return error


class TestTransient:
    @pytest.mark.parametrize(
        "exc",
        [
            ConnectionRefusedError(111, "Connect call failed"),
            ConnectionResetError(),
            TimeoutError(),
            OSError("network is unreachable"),
            pg.CannotConnectNowError("the database system is in recovery mode"),
            pg.CannotConnectNowError("the database system is starting up"),
            pg.AdminShutdownError("terminating connection due to administrator command"),
            pg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
            pg.SerializationError("could not serialize access"),
            pg.DeadlockDetectedError("deadlock detected"),
            pg.TooManyConnectionsError("sorry, too many clients already"),
            wrapped(pg.CannotConnectNowError("the database system is in recovery mode")),
            wrapped(pg.SerializationError("could not serialize access")),
            wrapped(pg.ConnectionDoesNotExistError("closed"), sa.InterfaceError),
            sa.OperationalError("SELECT 1", None, Exception("server closed the connection")),
            kafka.KafkaConnectionError("no broker"),
            kafka.KafkaTimeoutError(),
            kafka.NotLeaderForPartitionError(),
            kafka.RequestTimedOutError(),
            kafka.NodeNotReadyError(),
            Transient("a dead letter could not be produced"),
        ],
        ids=lambda e: type(e).__name__,
    )
    def test_a_failure_of_the_database_or_broker_is_transient(self, exc: BaseException) -> None:
        assert is_transient(exc)

    def test_a_wrapped_transient_failure_is_found_through_its_causes(self) -> None:
        outer = RuntimeError("while handling a batch")
        outer.__cause__ = ConnectionRefusedError(111, "refused")
        assert is_transient(outer)


class TestTheDatasFault:
    class Model(BaseModel):
        n: int

    @pytest.mark.parametrize(
        "exc",
        [
            OverflowError("date value out of range"),
            ValueError("bad"),
            KeyError("x"),
            RuntimeError("a bug that meets a record"),
            wrapped(pg.UntranslatableCharacterError("unsupported Unicode escape sequence")),
            wrapped(pg.CharacterNotInRepertoireError('invalid byte sequence for "UTF8": 0x00')),
            wrapped(pg.NumericValueOutOfRangeError("bigint out of range")),
            wrapped(pg.StringDataRightTruncationError("value too long"), sa.DataError),
            wrapped(pg.UniqueViolationError("duplicate key"), sa.IntegrityError),
            # asyncpg's client-side DataError is an InterfaceError, and SQLAlchemy wraps it as
            # one: the innermost error decides
            wrapped(ClientDataError("invalid input for query argument $1"), sa.InterfaceError),
            kafka.MessageSizeTooLargeError(),
        ],
        ids=lambda e: type(e).__name__ + ":" + error_kind(e),
    )
    def test_a_fault_of_the_data_is_not_transient(self, exc: BaseException) -> None:
        assert not is_transient(exc)

    def test_a_validation_error_is_isolated(self) -> None:
        with pytest.raises(ValidationError) as caught:
            self.Model.model_validate({"n": "x"})
        assert not is_transient(caught.value)

    def test_an_error_raised_while_handling_a_transient_one_is_not_transient(self) -> None:
        poison = ValueError("poison")
        poison.__context__ = ConnectionResetError()  # implicit: not what it wraps
        assert not is_transient(poison)


class TestDescription:
    def test_a_database_error_is_named_by_the_driver_without_the_statement(self) -> None:
        exc = wrapped(pg.UntranslatableCharacterError("unsupported Unicode escape sequence"))
        assert error_kind(exc) == "UntranslatableCharacterError"
        assert describe(exc) == (
            "UntranslatableCharacterError: unsupported Unicode escape sequence"
        )

    def test_a_description_is_bounded(self) -> None:
        assert describe(ValueError("x" * 10_000), 100) == ("ValueError: " + "x" * 100)[:100]


class TestBackoff:
    def test_doubles_up_to_the_cap_and_starts_again_after_a_success(self) -> None:
        backoff = Backoff(0.1, 1.0)
        assert [backoff.next() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
        backoff.reset()
        assert backoff.next() == 0.1
