"""Which failures are retried rather than dead-lettered."""

from __future__ import annotations

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError

from chassis.errors import TransientError, is_transient


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connection refused"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.InternalClientError("cannot switch to state 15; another operation (2) is in progress"),
        asyncpg.SerializationError("could not serialize access"),
        KafkaConnectionError("broker gone"),
        TransientError("busy"),
    ],
)
def test_infrastructure_failures_are_transient(error: Exception) -> None:
    assert is_transient(error)


@pytest.mark.parametrize(
    "error", [ValueError("bad amount"), KeyError("order_id"), asyncpg.UniqueViolationError("duplicate key")]
)
def test_failures_of_the_message_itself_are_not_transient(error: Exception) -> None:
    assert not is_transient(error)


def test_a_transient_cause_makes_the_wrapping_error_transient() -> None:
    outer = RuntimeError("could not load the order")
    outer.__cause__ = ConnectionResetError("reset by peer")
    assert is_transient(outer)
