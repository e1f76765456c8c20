"""A small HTTP/1.1 server on loopback for the fakes of outside systems (an LLM API, web sites).

Plain asyncio, so a test sees exactly what happened on the wire: which requests came, which
streamed responses were still open, and when a client hung up in the middle of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

REASONS = {200: "OK", 301: "Moved Permanently", 302: "Found", 400: "Bad Request", 401: "Unauthorized",
           404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}  # fmt: skip


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None  # sent chunked, piece by piece


Handler = Callable[[Request], Awaitable[Response]]


class LoopbackServer:
    """Serves `handler` on 127.0.0.1; counts streams that are open and those the client cut."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.requests: list[Request] = []
        self.open_streams = 0
        self.streams_cut_by_client = 0
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> LoopbackServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while (request := await _read_request(reader)) is not None:
                self.requests.append(request)
                response = await self._handler(request)
                await self._send(reader, writer, response)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _send(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, response: Response
    ) -> None:
        head = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Status')}"]
        headers = dict(response.headers)
        if response.stream is None:
            headers["Content-Length"] = str(len(response.body))
        else:
            headers["Transfer-Encoding"] = "chunked"
        head += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        if response.stream is None:
            writer.write(response.body)
            await writer.drain()
            return
        self.open_streams += 1
        # The client sends nothing while it reads a stream: end of input means it hung up.
        hung_up = asyncio.ensure_future(reader.read(1))
        sending = asyncio.ensure_future(_write_chunks(writer, response.stream))
        try:
            await asyncio.wait({hung_up, sending}, return_when=asyncio.FIRST_COMPLETED)
            if not sending.done() or sending.exception() is not None:
                self.streams_cut_by_client += 1
                raise ConnectionResetError
        finally:
            for task in (hung_up, sending):
                task.cancel()
            # Wait for the cancelled read to let go of the reader: the next request on this
            # keep-alive connection reads from it (else "readuntil() called while another
            # coroutine is already waiting").
            await asyncio.gather(hung_up, sending, return_exceptions=True)
            self.open_streams -= 1


async def _write_chunks(writer: asyncio.StreamWriter, stream: AsyncIterator[bytes]) -> None:
    async for piece in stream:
        writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        line = await reader.readline()
    except ConnectionError:
        return None
    if not line.strip():
        return None
    method, path, _ = line.decode().split(" ", 2)
    headers: dict[str, str] = {}
    while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = header.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
    return Request(method, path, headers, body)
