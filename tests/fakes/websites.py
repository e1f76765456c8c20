"""Web pages served on loopback: articles with boilerplate around them, redirects, errors,
huge and slow pages, and a PDF, for tests of fetching and of the agents that read the web.

`serve_site(tls_name=...)` also puts a TLS front on the site, with a certificate for that name
made by the openssl command, so a test can check Host, SNI and certificate handling.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import ssl
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.fakes.http import LoopbackServer, Request, Response

CHROME = """<nav><a href="/">Home</a> | <a href="/about">About</a> | <a href="/login">Log in</a></nav>
<div class="cookie">We use cookies to improve your experience. Accept all cookies.</div>"""
FOOTER = """<footer><p>Copyright 2026 Example Media. All rights reserved.</p>
<ul><li><a href="/privacy">Privacy</a></li><li><a href="/terms">Terms</a></li></ul></footer>"""

ARTICLES = {
    "/solar": (
        "Solar power in 2026",
        [
            "Solar panels convert sunlight into electricity using photovoltaic cells made of silicon.",
            "The cost of solar modules fell by about ninety percent between 2010 and 2020, which made "
            "solar the cheapest source of new electricity in many countries.",
            "Rooftop systems let households produce their own power, while utility-scale solar farms "
            "cover hundreds of hectares and feed the grid directly.",
            "Because the sun does not shine at night, solar power is often paired with batteries that "
            "store midday surplus for the evening peak in demand.",
            "Recycling old panels is becoming an industry of its own as the first large installations "
            "reach the end of their twenty-five year life.",
        ],
    ),
    "/wind": (
        "How wind turbines work",
        [
            "Wind turbines turn the kinetic energy of moving air into electricity with a rotor, a "
            "gearbox and a generator housed in the nacelle.",
            "Offshore wind farms benefit from stronger and steadier winds than sites on land, but they "
            "cost more to build and maintain.",
            "A modern offshore turbine can reach a capacity of fifteen megawatts, enough for thousands "
            "of homes.",
            "Wind output varies with the weather, so grid operators forecast it days ahead and balance "
            "it with other sources.",
        ],
    ),
}


def article_html(title: str, paragraphs: list[str]) -> bytes:
    body = "\n".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        f"<!doctype html><html><head><title>{title} | Example Media</title></head><body>{CHROME}"
        f"<main><article><h1>{title}</h1>{body}</article></main>"
        f"<aside>Related: Ten tricks for saving money</aside>{FOOTER}</body></html>"
    ).encode()


SHORT_PAGE = b"""<html><head><title>Opening hours</title></head><body>
<nav><a href="/">Home</a></nav><p>The library opens at nine on weekdays.</p></body></html>"""
LATIN1_PAGE = (
    "<html><head><title>Caf\xe9 notes</title></head><body><p>Le caf\xe9 est tr\xe8s bon, et la "
    "cr\xe8me br\xfbl\xe9e aussi. Voil\xe0 pourquoi on y revient.</p></body></html>"
).encode("latin-1")

# Hostile pages. An article, then `<title>` 12,000 times and never closed: a regex that
# rescans from every `<title` takes seconds (quadratic); a linear search takes microseconds.
HOSTILE_TITLE_PAGE = (
    b"<html><body><article>"
    + b"".join(
        f"<p>Paragraph {i}: wind turbines turn the kinetic energy of moving air into "
        f"electricity with a rotor.</p>".encode()
        for i in range(8)
    )
    + b"</article>"
    + b"<title>" * 12_000
)
# About 150,000 characters of readable text: a chain that references it 100 times asks for 15 MB.
BIG_ARTICLE_PAGE = (
    b"<html><head><title>Everything about the grid</title></head><body><article>"
    + b"".join(
        f"<p>Fact {i}: the grid balances supply and demand every second of every day.</p>".encode()
        for i in range(2_000)
    )
    + b"</article></body></html>"
)
# 2 MB of paragraphs, under the page size cap: seconds of trafilatura, holding the GIL.
SLOW_TO_EXTRACT_PAGE = b"<html><body>" + b"<p>word word word</p>" * 100_000 + b"</body></html>"


@dataclass
class Site:
    server: LoopbackServer
    redirect_target: str = "http://10.0.0.1/secret"  # where /to-private redirects
    hits: dict[str, int] = field(default_factory=dict)
    tls_port: int = 0
    tls_names_seen: list[str | None] = field(default_factory=list)  # SNI of each TLS handshake
    trust: ssl.SSLContext | None = None  # a client context that trusts the TLS front's certificate

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def url(self, path: str) -> str:
        return f"{self.server.base_url}{path}"

    def tls_url(self, host: str, path: str) -> str:
        return f"https://{host}:{self.tls_port}{path}"

    @property
    def requests(self) -> list[Request]:
        return self.server.requests

    @property
    def open_streams(self) -> int:
        return self.server.open_streams

    @property
    def streams_cut(self) -> int:
        """Streamed bodies the client hung up on before their end."""
        return self.server.streams_cut_by_client


def _html(body: bytes, status: int = 200, **headers: str) -> Response:
    return Response(status, {"Content-Type": "text/html; charset=utf-8", **headers}, body)


async def _slowly(pieces: int, delay: float) -> AsyncIterator[bytes]:
    yield b"<html><body><p>"
    for _ in range(pieces):
        await asyncio.sleep(delay)  # the scenario: a page that is slow on purpose
        yield b"slow words " * 10
    yield b"</p></body></html>"


async def _huge() -> AsyncIterator[bytes]:
    for _ in range(2_000):
        yield b"<p>" + b"x" * 4096 + b"</p>"


def _routes(site: Site, path: str) -> Response:
    if path in ARTICLES:
        return _html(article_html(*ARTICLES[path]))
    fixed = {
        "/moved": Response(302, {"Location": "/solar"}),
        "/moved-twice": Response(301, {"Location": "/moved"}),
        "/to-private": Response(302, {"Location": site.redirect_target}),
        "/loop": Response(302, {"Location": "/loop"}),
        "/short": _html(SHORT_PAGE),
        "/latin1": Response(200, {"Content-Type": "text/html; charset=iso-8859-1"}, LATIN1_PAGE),
        "/plain": Response(
            200, {"Content-Type": "text/plain"}, b"Plain text notes about batteries.\n"
        ),
        "/report.pdf": Response(200, {"Content-Type": "application/pdf"}, b"%PDF-1.7 ..."),
        "/untyped": Response(200, {}, b"<html><body><p>No type stated.</p></body></html>"),
        "/busy": _html(b"busy", 429, **{"Retry-After": "3"}),
        "/broken": _html(b"oops", 500),
        "/huge": Response(200, {"Content-Type": "text/html"}, stream=_huge()),
        "/huge-declared": _html(b"<p>" + b"y" * 200_000 + b"</p>"),
        "/slow": Response(200, {"Content-Type": "text/html"}, stream=_slowly(100, 0.2)),
        "/empty": _html(b"<html><body><nav>Home</nav></body></html>"),
        "/hostile-title": _html(HOSTILE_TITLE_PAGE),
        "/big-article": _html(BIG_ARTICLE_PAGE),
        "/slow-to-extract": _html(SLOW_TO_EXTRACT_PAGE),
    }
    if path == "/unavailable":  # Retry-After as an HTTP date, two minutes from now
        when = email.utils.formatdate(time.time() + 120, usegmt=True)
        return _html(b"down for maintenance", 503, **{"Retry-After": when})
    return fixed.get(path) or _html(b"<h1>Not found</h1>", 404)


@asynccontextmanager
async def serve_site(tls_name: str | None = None) -> AsyncIterator[Site]:
    """The site on a free loopback port; with `tls_name`, also over TLS for that name."""

    async def handle(request: Request) -> Response:
        path = request.path.split("?", 1)[0]
        site.hits[path] = site.hits.get(path, 0) + 1
        return _routes(site, path)

    server = LoopbackServer(handle)
    site = Site(server)
    async with server, contextlib.AsyncExitStack() as stack:
        if tls_name is not None:
            await stack.enter_async_context(_tls_front(site, tls_name))
        yield site


@asynccontextmanager
async def _tls_front(site: Site, name: str) -> AsyncIterator[None]:
    """Terminates TLS with a certificate for `name` and passes the bytes on to the site."""
    with tempfile.TemporaryDirectory() as folder:
        cert, key = await asyncio.to_thread(_certificate, name, Path(folder))
        server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_side.load_cert_chain(cert, key)
        server_side.sni_callback = lambda _obj, sni, _ctx: site.tls_names_seen.append(sni)
        site.trust = ssl.create_default_context(cafile=str(cert))

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def front(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        site_r, site_w = await asyncio.open_connection("127.0.0.1", site.server.port)
        await asyncio.gather(relay(client_r, site_w), relay(site_r, client_w))

    server = await asyncio.start_server(front, "127.0.0.1", 0, ssl=server_side)
    site.tls_port = server.sockets[0].getsockname()[1]
    try:
        yield
    finally:
        server.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await server.wait_closed()


def _certificate(name: str, folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for `name` and its key."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key
