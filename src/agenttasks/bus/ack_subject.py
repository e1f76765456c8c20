"""The integers of a JetStream message's ack subject (its reply), without nats-py's `Msg.metadata`.

nats-py's `metadata` builds two frozen dataclasses and a timezone-aware datetime for every
message (~19% of the deliverer's GIL samples, DELIVER's profile); our consumers need three of its
integers. The server's two forms (nats-py accepts the same ones, at the same token indexes):

    $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<timestamp>.<pending>
    $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.
        <timestamp>.<pending>[.<random token>...]

A subject of neither form, or a numeric token that is not plain ASCII digits (nats-py's `int()`
would take "1_0" as 10, " 7" as 7 and Arabic-Indic digits as numbers), raises NotAnAckSubject:
a wrong sequence or delivery count would skip, repeat or quarantine the wrong message.
"""

from __future__ import annotations

_SHORT = 9  # tokens of the form without a domain
_LONG = 11  # at least this many in the form with domain and account hash (nats-py's test)
_DIGITS = 20  # 2**64 - 1 has 20 digits: the server's counters are uint64


class NotAnAckSubject(ValueError):
    """A reply subject that is not a JetStream ack subject of either form."""


def _number(token: str) -> int:
    if not (0 < len(token) <= _DIGITS and token.isascii() and token.isdigit()):
        raise NotAnAckSubject("a JetStream ack subject's counter is not a plain number")
    return int(token)


def ack_numbers(reply: str | None) -> tuple[int, int, int]:
    """(delivered, stream sequence, consumer sequence) of a JetStream message's reply subject."""
    if not reply:
        raise NotAnAckSubject("the message has no reply subject: not a JetStream delivery")
    tokens = reply.split(".")
    count = len(tokens)
    if count == _SHORT:
        first = 4
    elif count >= _LONG:
        first = 6
    else:
        raise NotAnAckSubject("not a JetStream ack subject (unexpected number of tokens)")
    if tokens[0] != "$JS" or tokens[1] != "ACK":
        raise NotAnAckSubject("not a JetStream ack subject (no $JS.ACK prefix)")
    return _number(tokens[first]), _number(tokens[first + 1]), _number(tokens[first + 2])
