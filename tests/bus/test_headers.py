"""Our header-block parse against nats-py's own `Client._parse_header_lines` (hypothesis).

bus/headers.py overrides a private nats-py method: these tests fail loudly if the library's
method changes its behaviour, its signature, or stops being what `_process_headers` calls.
"""

from __future__ import annotations

import inspect

from hypothesis import example, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client

from agenttasks.bus import headers
from agenttasks.bus.headers import HeaderClient, parse_header_lines

# Bytes that matter to the parse: separators, every ASCII whitespace (\x1c-\x1f too), UTF-8
# lead and continuation bytes, an invalid byte.
_SPECIAL = [b"\r\n", b"\r", b"\n", b":", b": ", b" ", b"\t", b"\x0b", b"\x0c", b"\x1c", b"\x1f"]
_SPECIAL += [b"\xc3\xa9", b"\xc3", b"\xa9", b"\xff", b"\xef\xbf\xbd", b"\x00", b"\x85", b"\xa0"]
_PIECE = st.one_of(
    st.sampled_from(_SPECIAL),
    st.sampled_from([b"Nats-Msg-Id", b"traceparent", b"Status", b"tasks:12", b"a", b"-"]),
    st.binary(max_size=6),
    st.text(max_size=4).map(str.encode),
)
_LINE = st.lists(_PIECE, max_size=6).map(b"".join)
BLOCK = st.one_of(
    st.lists(_LINE, max_size=8).map(b"\r\n".join),
    st.binary(max_size=200),
)


def _same_as_nats_py(raw: bytes) -> None:
    ours = parse_header_lines(raw)
    theirs = Client._parse_header_lines(raw)
    assert list(ours.items()) == list(theirs.items())  # same keys, values and order
    # Asked again, names now come from the table of verdicts: still the same.
    assert list(parse_header_lines(raw).items()) == list(theirs.items())


@settings(max_examples=250, deadline=None)
@given(BLOCK)
@example(b"Nats-Msg-Id: tasks:1\r\nNats-Expected-Last-Msg-Id: tasks:0\r\n\r\n")
@example(b"\x1cName: v\r\nNa me: v\r\nN\xc3\xa9: v\r\n: empty name\r\nno colon\r\n\r\n")
@example(b"A:\t x \r\nA: again\r\nB:\xff\xfe\r\nC::: d :\r\n \r\n\r\n\r\n")
@example(b"Name\x85: v\r\nName\xa0: v\r\nName\x00: v\r\n")
def test_gives_nats_py_s_dict_for_every_block(raw: bytes) -> None:
    _same_as_nats_py(raw)


def test_the_table_of_names_stays_bounded() -> None:
    long_name = b"N" * (headers._NAME_BYTES_MAX + 1)
    for i in range(headers._NAMES_MAX * 4):
        _same_as_nats_py(b"X-%d: v\r\n%s: w\r\n\r\n" % (i, long_name))
    assert len(headers._NAMES) <= headers._NAMES_MAX
    assert long_name not in headers._NAMES


def test_nats_py_still_calls_the_method_we_override() -> None:
    assert isinstance(inspect.getattr_static(Client, "_parse_header_lines"), staticmethod)
    assert list(inspect.signature(Client._parse_header_lines).parameters) == ["raw"]
    assert "self._parse_header_lines(" in inspect.getsource(Client._process_headers)
    assert HeaderClient._parse_header_lines is parse_header_lines


async def test_the_client_parses_with_ours_and_gets_nats_py_s_headers() -> None:
    status = b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 5\r\nx y: z\r\n\r\n"
    plain = b"NATS/1.0\r\nNats-Msg-Id: tasks:7\r\ntraceparent: 00-ab-cd-01\r\n\r\n"
    for block in (status, plain, b"NATS/1.0 404 No Messages\r\n\r\n"):
        ours = await HeaderClient()._process_headers(block)
        assert ours == await Client()._process_headers(block)
    assert await HeaderClient()._process_headers(plain) == {
        "Nats-Msg-Id": "tasks:7",
        "traceparent": "00-ab-cd-01",
    }
