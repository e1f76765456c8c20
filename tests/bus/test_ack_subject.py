"""The ack subject parser against nats-py's own `Msg.Metadata` parse (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from nats.aio.msg import Msg

from agenttasks.bus.ack_subject import NotAnAckSubject, ack_numbers

UINT64 = st.integers(min_value=0, max_value=2**64 - 1)
NAME = st.text(st.characters(codec="ascii", exclude_characters=". *>"), min_size=1, max_size=8)
# Tokens a hostile or broken publisher could put where a counter goes: near-numbers included.
TOKEN = st.one_of(
    UINT64.map(str),
    st.sampled_from(["", "1_0", " 7", "7 ", "+5", "-1", "\u0663", "\uff17", "0x1f", "1e3", "²"]),
    st.text(st.sampled_from("0123456789_+- \u0663abc"), max_size=22),
)


def nats_numbers(reply: str) -> tuple[int, int, int]:
    metadata = Msg.Metadata._from_reply(reply)
    return metadata.num_delivered, metadata.sequence.stream, metadata.sequence.consumer


def short_form(stream: str, consumer: str, numbers: list[str]) -> str:
    return ".".join(["$JS", "ACK", stream, consumer, *numbers])


def long_form(domain: str, account: str, stream: str, consumer: str, numbers: list[str]) -> str:
    return ".".join(["$JS", "ACK", domain, account, stream, consumer, *numbers, "r4nd0m"])


@given(NAME, NAME, UINT64, UINT64, UINT64, UINT64, UINT64)
def test_well_formed_subjects_give_what_nats_py_gives(stream, consumer, d, s, c, ts, pending):
    numbers = [str(d), str(s), str(c), str(ts % 2**62), str(pending)]
    for reply in (
        short_form(stream, consumer, numbers),
        long_form("_", "ACCHASH", stream, consumer, numbers),
        long_form("hub", "ACCHASH", stream, consumer, numbers)[: -len(".r4nd0m")],  # 11 tokens
    ):
        assert ack_numbers(reply) == nats_numbers(reply) == (d, s, c)


@given(NAME, NAME, TOKEN, TOKEN, TOKEN, st.booleans())
@example("S", "C", "1_0", "5", "6", False)  # int() would read 10
@example("S", "C", "3", "\u0663", "6", True)  # int() reads an Arabic-Indic 3
@example("S", "C", "3", "4", " 6", False)
def test_a_counter_is_read_exactly_or_refused(stream, consumer, d, s, c, long):
    numbers = [d, s, c, "1", "0"]
    reply = (
        long_form("_", "H", stream, consumer, numbers)
        if long
        else short_form(stream, consumer, numbers)
    )
    try:
        ours = ack_numbers(reply)
    except NotAnAckSubject:
        for token in (d, s, c):  # refused only when a counter is not plain decimal digits
            if not (token.isascii() and token.isdigit() and len(token) <= 20):
                return
        pytest.fail(f"refused a well-formed subject {reply!r}")
    assert ours == nats_numbers(reply) == (int(d), int(s), int(c))
    assert all(t.isascii() and t.isdigit() for t in (d, s, c))


def oracle(reply: str) -> tuple[int, int, int]:
    """nats-py's reading of the counters, its timestamp and pending (we read neither) made valid."""
    parts = reply.split(".")
    if len(parts) == 9 or len(parts) >= 11:
        first = 4 if len(parts) == 9 else 6
        parts[first + 3 : first + 5] = ["0", "0"]
    return nats_numbers(".".join(parts))


def plain(reply: str) -> bool:
    parts = reply.split(".")
    first = 4 if len(parts) == 9 else 6
    return all(t.isascii() and t.isdigit() and len(t) <= 20 for t in parts[first : first + 3])


@given(st.lists(st.one_of(NAME, UINT64.map(str)), max_size=14))
@example(["S", "C", "1_0", "2", "3", "4", "5"])
@example(["0", "0", "0", "0", "0", "0", "0", ":"])
def test_other_subjects_are_read_as_nats_py_reads_them_or_refused(tokens):
    for reply in (".".join(tokens), ".".join(["$JS", "ACK", *tokens])):
        try:
            expected = oracle(reply)
        except Exception:  # nats-py refuses it (or fails on it): so must we, with our error
            with pytest.raises(NotAnAckSubject):
                ack_numbers(reply)
            continue
        if plain(reply):
            assert ack_numbers(reply) == expected
        else:  # nats-py's int() took a counter that is not plain digits ("1_0" as 10)
            with pytest.raises(NotAnAckSubject):
                ack_numbers(reply)


@pytest.mark.parametrize(
    "reply",
    [
        None,
        "",
        "_INBOX.abc.1",
        "$JS.ACK.S.C.1.2.3.4",  # 8 tokens
        "$JS.ACK.S.C.1.2.3.4.5.6",  # 10 tokens
        "$JS.NAK.S.C.1.2.3.4.5",
        "$js.ack.S.C.1.2.3.4.5",
        "$JS.ACK.S.C.1.2.123456789012345678901.4.5",  # past uint64's 20 digits
    ],
)
def test_what_is_not_an_ack_subject_is_refused(reply):
    with pytest.raises(NotAnAckSubject):
        ack_numbers(reply)
