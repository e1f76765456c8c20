"""The reconnect pacing and logging of a lost connection (outage.py)."""

from __future__ import annotations

import logging

import pytest

from agenttasks.outage import Outage, backoff


def test_reconnect_delays_double_from_a_fifth_of_a_second_to_five_seconds() -> None:
    assert [backoff(n) for n in range(7)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert backoff(10_000) == 5.0


def test_an_outage_is_logged_once_when_lost_and_once_when_restored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = Outage("NATS (relay)", logging.getLogger("test.outage"))
    with caplog.at_level(logging.INFO, logger="test.outage"):
        delays = [outage.failed(ConnectionRefusedError("refused\nhint")) for _ in range(30)]
        assert outage.lost
        outage.restored()
        outage.restored()  # nothing to say: it was not lost
    assert delays[:3] == [0.2, 0.4, 0.8]
    assert max(delays) == 5.0
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0] == "NATS (relay) lost (refused); retrying with backoff"
    assert messages[1].startswith("NATS (relay) restored after ")
    assert messages[1].endswith("(30 attempts)")
    assert not outage.lost
    assert outage.failed("again") == 0.2  # a new outage starts the backoff afresh
