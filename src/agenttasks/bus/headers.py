"""nats-py's client with a faster parse of a message's header block (same dict for every input).

Every stored message carries two or three headers (Nats-Msg-Id, the expectation, traceparent),
and nats-py 2.16 splits them in `Client._parse_header_lines` with a per-character
`any(c.isspace() for c in key)` generator on each name: 7.3% of the background process's samples
in the lifecycle bench, in every consumer (docs/performance.md, "NATSIO"). Names repeat (a
handful of header names in all), so here a name's verdict is looked up in a small bounded table
and only a new name is checked; values are decoded as nats-py does. This overrides a private
method: tests/bus/test_headers.py checks, with hypothesis, that it returns nats-py's own dict for
every input (hostile blocks included), and fails loudly if nats-py's method changes or goes.
"""

from __future__ import annotations

import re

from nats.aio.client import Client

# What str.isspace() calls whitespace among ASCII characters (\x1c-\x1f included, which
# bytes.strip() keeps): a name with one inside is not a token, and nats-py drops it.
_NAME_WHITESPACE = re.compile(rb"[\t\n\x0b\x0c\r\x1c-\x1f ]")
_CRLF = b"\r\n"
# The verdicts on names seen: the key, or None for a name nats-py drops. Bounded (count and
# length), so hostile senders of ever-new names only make their own names slower.
_NAMES: dict[bytes, str | None] = {}
_NAMES_MAX = 256
_NAME_BYTES_MAX = 64
_UNSEEN = object()


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """The headers of a block of `Name: Value` lines, exactly as nats-py 2.16 parses them."""
    out: dict[str, str] = {}
    names = _NAMES
    for line in raw.split(_CRLF):
        name, sep, value = line.partition(b":")
        if not sep:  # an empty line, or one without a colon: skipped, as nats-py does
            continue
        key = names.get(name, _UNSEEN)
        if key is _UNSEEN:
            key = _header_name(name)
        if key is not None:
            out[key] = value.strip().decode("utf-8", "replace")  # type: ignore[index]
    return out


def _header_name(name: bytes) -> str | None:
    stripped = name.strip()
    key = None
    if stripped.isascii() and _NAME_WHITESPACE.search(stripped) is None:
        key = stripped.decode("ascii")
    if len(name) <= _NAME_BYTES_MAX and len(_NAMES) < _NAMES_MAX:
        _NAMES[name] = key
    return key


class HeaderClient(Client):
    """nats-py's Client, its header blocks parsed by `parse_header_lines`."""

    _parse_header_lines = staticmethod(parse_header_lines)
