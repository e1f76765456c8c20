"""Web pages served on loopback: articles with boilerplate around them, redirects, errors,
huge and slow pages, and a PDF, for tests of fetching and of the agents that read the web."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

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


@dataclass
class Site:
    server: LoopbackServer
    redirect_target: str = "http://10.0.0.1/secret"  # where /to-private redirects
    hits: dict[str, int] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def url(self, path: str) -> str:
        return f"{self.server.base_url}{path}"

    @property
    def open_streams(self) -> int:
        return self.server.open_streams


def _html(body: bytes, status: int = 200, **headers: str) -> Response:
    return Response(status, {"Content-Type": "text/html; charset=utf-8", **headers}, body)


async def _slowly(pieces: int, delay: float) -> AsyncIterator[bytes]:
    yield b"<html><body><p>"
    for _ in range(pieces):
        await asyncio.sleep(delay)
        yield b"slow words " * 10
    yield b"</p></body></html>"


async def _huge() -> AsyncIterator[bytes]:
    for _ in range(2_000):
        yield b"<p>" + b"x" * 4096 + b"</p>"


@asynccontextmanager
async def serve_site() -> AsyncIterator[Site]:
    """The site on a free loopback port."""

    async def handle(request: Request) -> Response:
        path = request.path.split("?", 1)[0]
        site.hits[path] = site.hits.get(path, 0) + 1
        if path in ARTICLES:
            return _html(article_html(*ARTICLES[path]))
        if path == "/moved":
            return Response(302, {"Location": "/solar"})
        if path == "/to-private":
            return Response(302, {"Location": site.redirect_target})
        if path == "/loop":
            return Response(302, {"Location": "/loop"})
        if path == "/plain":
            return Response(
                200, {"Content-Type": "text/plain"}, b"Plain text notes about batteries."
            )
        if path == "/report.pdf":
            return Response(200, {"Content-Type": "application/pdf"}, b"%PDF-1.7 ...")
        if path == "/busy":
            return _html(b"busy", 429, **{"Retry-After": "3"})
        if path == "/broken":
            return _html(b"oops", 500)
        if path == "/huge":
            return Response(200, {"Content-Type": "text/html"}, stream=_huge())
        if path == "/slow":
            return Response(200, {"Content-Type": "text/html"}, stream=_slowly(100, 0.2))
        if path == "/empty":
            return _html(b"<html><body><nav>Home</nav></body></html>")
        return _html(b"<h1>Not found</h1>", 404)

    server = LoopbackServer(handle)
    site = Site(server)
    async with server:
        yield site
