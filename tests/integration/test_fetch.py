"""Fetching pages from a site on loopback: extraction, redirects, caps, errors and the SSRF guard."""

from __future__ import annotations

import asyncio

import pytest

from agenttasks.workers.fetch import Fetcher, FetchError
from tests.fakes.websites import serve_site
from tests.waiting import wait_until


async def fetch(url: str, **options: object) -> object:
    fetcher = Fetcher(["127.0.0.1"], **options)  # type: ignore[arg-type]
    try:
        return await fetcher.fetch(url)
    finally:
        await fetcher.aclose()


async def refusal(url: str, **options: object) -> FetchError:
    with pytest.raises(FetchError) as caught:
        await fetch(url, **options)
    return caught.value


async def test_the_article_is_extracted_without_navigation_cookies_or_footer() -> None:
    async with serve_site() as site:
        page = await fetch(site.url("/solar"))
    assert "photovoltaic cells" in page.text
    assert "batteries" in page.text
    for boilerplate in ("cookies", "Copyright", "Log in", "Privacy"):
        assert boilerplate not in page.text
    assert page.title.startswith("Solar power in 2026")
    assert page.chars == len(page.text)


async def test_a_redirect_is_followed_and_the_final_url_reported() -> None:
    async with serve_site() as site:
        page = await fetch(site.url("/moved"))
    assert page.url == site.url("/solar")


async def test_plain_text_is_taken_as_it_is() -> None:
    async with serve_site() as site:
        page = await fetch(site.url("/plain"))
    assert page.text == "Plain text notes about batteries."


async def test_loopback_is_refused_unless_the_host_is_allowed() -> None:
    async with serve_site() as site:
        fetcher = Fetcher([])
        with pytest.raises(FetchError) as caught:
            await fetcher.fetch(site.url("/solar"))
        await fetcher.aclose()
    assert caught.value.kind == "refused"
    assert not caught.value.transient
    assert "AGENTTASKS_FETCH_ALLOWED_HOSTS" in str(caught.value)
    assert site.hits == {}  # refused before any connection


@pytest.mark.parametrize(
    "target",
    ["http://10.0.0.1/secret", "http://169.254.169.254/latest/meta-data/", "http://[::ffff:127.0.0.1]:1/",
     "http://0.0.0.0:1/", "http://localhost:1/"],
)  # fmt: skip
async def test_a_redirect_to_a_non_public_address_is_refused(target: str) -> None:
    async with serve_site() as site:
        site.redirect_target = target
        error = await refusal(site.url("/to-private"))
    assert error.kind == "refused"


@pytest.mark.parametrize(
    "url", ["ftp://example.com/file", "file:///etc/passwd", "http:///nohost", "not a url"]
)
async def test_urls_that_are_not_http_are_refused(url: str) -> None:
    assert (await refusal(url)).kind == "invalid_url"


async def test_errors_say_whether_a_retry_may_help() -> None:
    async with serve_site() as site:
        missing = await refusal(site.url("/nope"))
        busy = await refusal(site.url("/busy"))
        broken = await refusal(site.url("/broken"))
    assert (missing.kind, missing.transient) == ("http_status", False)
    assert (busy.transient, busy.retry_after) == (True, 3.0)
    assert broken.transient
    assert "500" in str(broken)


async def test_other_content_types_and_empty_pages_are_refused() -> None:
    async with serve_site() as site:
        pdf = await refusal(site.url("/report.pdf"))
        empty = await refusal(site.url("/empty"))
    assert pdf.kind == "content_type"
    assert "application/pdf" in str(pdf)
    assert empty.kind == "empty"


async def test_a_body_over_the_cap_is_refused_and_its_download_stopped() -> None:
    async with serve_site() as site:
        error = await refusal(site.url("/huge"), max_bytes=100_000)
        await wait_until(lambda: site.open_streams == 0, within=5)
    assert error.kind == "too_large"


async def test_one_deadline_covers_the_whole_fetch() -> None:
    async with serve_site() as site:
        error = await refusal(site.url("/slow"), timeout=0.5)
        await wait_until(lambda: site.open_streams == 0, within=5)
    assert (error.kind, error.transient) == ("timeout", True)


async def test_redirect_loops_end() -> None:
    async with serve_site() as site:
        error = await refusal(site.url("/loop"))
    assert error.kind == "too_many_redirects"


async def test_cancelling_a_fetch_closes_its_connection() -> None:
    async with serve_site() as site:
        fetcher = Fetcher(["127.0.0.1"])
        call = asyncio.create_task(fetcher.fetch(site.url("/slow")))
        await wait_until(lambda: site.open_streams == 1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await wait_until(lambda: site.open_streams == 0, within=5)
        await fetcher.aclose()
    assert site.server.streams_cut_by_client == 1
