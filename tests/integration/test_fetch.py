"""Fetching pages from a site on loopback: extraction, redirects, caps, errors and the SSRF guard.

Host names under .test never resolve on a real resolver, so where a test names a host it hands
the Fetcher a resolver of its own: a fetch that reaches the site by such a name shows that the
connection went to the address the guard vetted, not to a second lookup.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from agenttasks.workers.fetch import Fetcher, FetchError, Page
from agenttasks.workers.retry_policy import retry_after_seconds
from tests.fakes.websites import Site, serve_site
from tests.waiting import wait_until


@asynccontextmanager
async def fetching(allowed: tuple[str, ...] = ("127.0.0.1",), **options: Any) -> AsyncIterator[Fetcher]:  # fmt: skip
    fetcher = Fetcher(allowed, **options)
    try:
        yield fetcher
    finally:
        await fetcher.aclose()


async def fetch(url: str, **options: Any) -> Page:
    async with fetching(**options) as fetcher:
        return await fetcher.fetch(url)


async def refusal(url: str, **options: Any) -> FetchError:
    with pytest.raises(FetchError) as caught:
        await fetch(url, **options)
    return caught.value


class Names:
    """A resolver for made-up host names; records each lookup."""

    def __init__(self, **addresses: list[str]) -> None:
        self.addresses = {name.replace("_", "."): found for name, found in addresses.items()}
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host not in self.addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.addresses[host]


def by_name(site: Site, host: str, path: str) -> str:
    return f"http://{host}:{site.server.port}{path}"


async def test_the_article_is_extracted_without_navigation_cookies_or_footer() -> None:
    async with serve_site() as site:
        page = await fetch(site.url("/solar"))
    assert "photovoltaic cells" in page.text
    assert "evening peak" in page.text
    for boilerplate in ("cookies", "Copyright", "Log in", "Privacy", "Ten tricks"):
        assert boilerplate not in page.text
    assert page.title.startswith("Solar power in 2026")
    assert page.chars == len(page.text)


async def test_redirects_are_followed_and_the_final_url_reported() -> None:
    async with serve_site() as site:
        page = await fetch(site.url("/moved-twice"))
    assert page.url == site.url("/solar")
    assert "photovoltaic" in page.text
    assert site.hits == {"/moved-twice": 1, "/moved": 1, "/solar": 1}


async def test_plain_text_is_taken_as_it_is() -> None:
    async with serve_site() as site:
        page = await fetch(site.url("/plain"))
    assert page.text == "Plain text notes about batteries."


async def test_a_short_page_keeps_its_one_paragraph() -> None:
    async with serve_site() as site:
        page = await fetch(site.url("/short"))
    assert "The library opens at nine on weekdays." in page.text
    assert page.title == "Opening hours"


async def test_the_charset_the_server_states_is_used() -> None:
    async with serve_site() as site:
        page = await fetch(site.url("/latin1"))
    assert "crème brûlée" in page.text
    assert page.title == "Café notes"


async def test_loopback_is_refused_unless_the_host_is_allowed() -> None:
    async with serve_site() as site:
        error = await refusal(site.url("/solar"), allowed=())
    assert (error.kind, error.transient) == ("refused", False)
    assert str(error).startswith(
        f"Could not fetch {site.url('/solar')}: 127.0.0.1 is not a public address;"
    )
    assert "AGENTTASKS_FETCH_ALLOWED_HOSTS" in str(error)
    assert site.requests == []  # refused before any connection


async def test_a_host_allowed_by_name_is_reached_at_its_vetted_address_with_its_name() -> None:
    names = Names(news_test=["127.0.0.1"])
    async with serve_site() as site:
        page = await fetch(by_name(site, "news.test", "/moved"), allowed=("news.test",), resolver=names)  # fmt: skip
    assert page.url == by_name(site, "news.test", "/solar")
    assert [r.headers["host"] for r in site.requests] == [f"news.test:{site.server.port}"] * 2
    assert names.lookups == ["news.test", "news.test"]  # once per hop, never again by httpx


async def test_the_next_address_of_a_host_is_tried_when_one_refuses_connections() -> None:
    names = Names(news_test=["127.0.0.2", "127.0.0.1"])  # the site listens on 127.0.0.1 only
    async with serve_site() as site:
        page = await fetch(by_name(site, "news.test", "/wind"), allowed=("news.test",), resolver=names)  # fmt: skip
    assert "offshore" in page.text


async def test_a_name_that_does_not_resolve_is_a_permanent_network_error() -> None:
    error = await refusal("http://nowhere.test/", resolver=Names())
    assert (error.kind, error.transient) == ("network", False)
    assert str(error) == (
        "Could not fetch http://nowhere.test/: nowhere.test could not be resolved "
        "(Name or service not known)."
    )


async def test_a_name_that_resolves_to_loopback_is_refused_when_not_allowed() -> None:
    names = Names(intranet_test=["127.0.0.1"])
    async with serve_site() as site:
        error = await refusal(by_name(site, "intranet.test", "/solar"), resolver=names)
    assert error.kind == "refused"
    assert "intranet.test resolves to a non-public address (127.0.0.1)" in str(error)
    assert site.requests == []


async def test_a_host_with_one_private_address_among_public_ones_is_refused() -> None:
    names = Names(mixed_test=["93.184.216.34", "10.1.2.3"])
    error = await refusal("http://mixed.test/", resolver=names)
    assert error.kind == "refused"
    assert "(10.1.2.3)" in str(error)


@pytest.mark.parametrize(
    "target",
    ["http://10.0.0.1/secret", "http://169.254.169.254/latest/meta-data/", "http://[::1]:1/",
     "http://[::ffff:127.0.0.1]:1/", "http://[::ffff:a9fe:a9fe]/", "http://0.0.0.0:1/",
     "http://localhost:1/", "http://2130706433:1/", "http://0x7f.1:1/"],
)  # fmt: skip
async def test_a_redirect_to_a_non_public_address_is_refused(target: str) -> None:
    async with serve_site() as site:
        site.redirect_target = target
        error = await refusal(site.url("/to-private"))
    assert error.kind == "refused"
    assert error.final_url == target
    assert f"(redirected to {target})" in str(error)
    assert site.hits == {"/to-private": 1}


async def test_allowing_a_host_by_name_does_not_allow_where_it_redirects() -> None:
    """The allowance is for a name: a redirect to another host is judged on its own."""
    names = Names(news_test=["127.0.0.1"], intranet_test=["127.0.0.1"])
    async with serve_site() as site:
        for target in (site.url("/solar"), by_name(site, "intranet.test", "/solar")):
            site.redirect_target = target
            error = await refusal(
                by_name(site, "news.test", "/to-private"), allowed=("news.test",), resolver=names
            )
            assert error.kind == "refused"
    assert site.hits == {"/to-private": 2}


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/file", "file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO", "http:///nohost",
     "not a url", "http://example.com:99999/"],
)  # fmt: skip
async def test_urls_that_are_not_http_are_refused(url: str) -> None:
    error = await refusal(url)
    assert (error.kind, error.transient) == ("refused", False)
    assert str(error).startswith(f"Could not fetch {url}: ")


async def test_errors_say_whether_a_retry_may_help() -> None:
    async with serve_site() as site:
        missing = await refusal(site.url("/nope"))
        busy = await refusal(site.url("/busy"))
        broken = await refusal(site.url("/broken"))
        unavailable = await refusal(site.url("/unavailable"))
    assert (missing.kind, missing.transient) == ("http_status", False)
    assert str(missing) == f"Could not fetch {site.url('/nope')}: the server answered HTTP 404 Not Found."  # fmt: skip
    assert (busy.kind, busy.transient, busy.retry_after) == ("http_status", True, 3.0)
    assert "asked to wait 3 s" in str(busy)
    assert (broken.transient, broken.retry_after) == (True, None)
    assert "HTTP 500" in str(broken)
    assert unavailable.transient
    assert unavailable.retry_after is not None
    assert 60 < unavailable.retry_after <= 120


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("120", 120.0), (" 7 ", 7.0), ("0", 0.0), ("Thu, 01 Jan 1970 00:02:00 GMT", 60.0),
     ("Thursday, 01-Jan-70 00:02:00 GMT", 60.0), ("Thu Jan  1 00:02:00 1970", 60.0),
     ("Thu, 01 Jan 1970 00:00:30 GMT", 0.0), ("-5", None), ("1.5", None), ("soon", None),
     ("", None), (None, None)],
)  # fmt: skip
def test_retry_after_is_read_as_seconds_or_as_an_http_date(
    header: str | None, seconds: float | None
) -> None:
    assert retry_after_seconds(header, now=60.0) == seconds


async def test_other_content_types_and_empty_pages_are_refused() -> None:
    async with serve_site() as site:
        pdf = await refusal(site.url("/report.pdf"))
        untyped = await refusal(site.url("/untyped"))
        empty = await refusal(site.url("/empty"))
    assert (pdf.kind, pdf.transient) == ("content_type", False)
    assert "it is application/pdf, not HTML or plain text" in str(pdf)
    assert untyped.kind == "content_type"
    assert (empty.kind, empty.transient) == ("empty", False)


async def test_a_body_over_the_cap_is_refused_and_its_download_stopped() -> None:
    async with serve_site() as site:
        error = await refusal(site.url("/huge"), max_bytes=100_000)
        await wait_until(lambda: site.open_streams == 0, within=5)
    assert (error.kind, error.transient) == ("too_large", False)
    assert site.streams_cut == 1


async def test_a_declared_length_over_the_cap_is_refused_before_reading() -> None:
    async with serve_site() as site:
        error = await refusal(site.url("/huge-declared"), max_bytes=100_000)
    assert error.kind == "too_large"
    assert "200,007 bytes, over the limit of 100,000" in str(error)


async def test_one_deadline_covers_the_whole_fetch() -> None:
    async with serve_site() as site:
        error = await refusal(site.url("/slow"), timeout=0.5)
        await wait_until(lambda: site.open_streams == 0, within=5)
    assert (error.kind, error.transient) == ("timeout", True)
    assert site.streams_cut == 1


async def test_redirect_loops_end() -> None:
    async with serve_site() as site:
        error = await refusal(site.url("/loop"), max_redirects=3)
    assert error.kind == "refused"
    assert "redirects more than 3 times" in str(error)
    assert site.hits == {"/loop": 4}


async def test_cancelling_a_fetch_closes_its_connection() -> None:
    async with serve_site() as site, fetching() as fetcher:
        call = asyncio.create_task(fetcher.fetch(site.url("/slow")))
        await wait_until(lambda: site.open_streams == 1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await wait_until(lambda: site.open_streams == 0, within=5)
    assert site.streams_cut == 1


async def test_https_checks_the_certificate_against_the_name_not_the_address() -> None:
    names = Names(news_test=["127.0.0.1"], other_test=["127.0.0.1"])
    async with serve_site(tls_name="news.test") as site:
        allowed = ("news.test", "other.test")
        async with fetching(allowed, resolver=names, verify=site.trust) as fetcher:
            page = await fetcher.fetch(site.tls_url("news.test", "/wind"))
            # Same address, other name: a connection kept from the first fetch would carry
            # news.test's SNI and certificate and let this one through.
            with pytest.raises(FetchError) as caught:
                await fetcher.fetch(site.tls_url("other.test", "/wind"))
    assert "offshore" in page.text
    assert site.tls_names_seen == ["news.test", "other.test"]
    assert [r.headers["host"] for r in site.requests] == [f"news.test:{site.tls_port}"]
    assert (caught.value.kind, caught.value.transient) == ("network", False)
    assert "certificate" in str(caught.value)
