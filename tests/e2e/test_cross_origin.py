"""A frontend on another origin (issue 14, "Done when"), in a real headless Chromium.

One `agenttasks up` lists one origin in AGENTTASKS_CORS_ORIGINS. The page in
cross_origin_page/ (plain JS written like the guide's React example) is served from two more
loopback ports: the listed one, and one that is not listed. The same page creates a task with a
Bearer header (a preflighted fetch), follows it over SSE with `?token=`, reads it with
`min_position`, and watches the WebSocket. The assertions read what the page renders: the
browser, not the test, decides what a page on each origin may see.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from agenttasks.api.auth import mint_token
from tests.e2e.test_dashboard import (
    CHROMIUM,
    CHROMIUM_ARGS,
    WAIT_MS,
    HeldPages,
    Service,
    running_up,
)
from tests.waiting import block_for_value, block_until

pytestmark = pytest.mark.e2e

PAGE_DIR = Path(__file__).parent / "cross_origin_page"
FINAL = ("completed", "failed", "cancelled")


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def static_site() -> Iterator[str]:
    """The page's folder (and nothing else) served on a loopback port of its own; its origin."""
    handler = functools.partial(QuietFiles, directory=str(PAGE_DIR))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Origins:
    service: Service
    listed: str
    unlisted: str


@pytest.fixture(scope="module")
def origins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origins]:
    home = tmp_path_factory.mktemp("cross-origin") / "home"
    with (
        static_site() as listed,
        static_site() as unlisted,
        HeldPages() as held,
        running_up(home, held, AGENTTASKS_CORS_ORIGINS=listed) as service,
    ):
        yield Origins(service, listed, unlisted)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
        assert errors == [], errors  # the page's own code never threw
    finally:
        context.close()


def open_page(
    page: Page,
    origin: str,
    service: Service,
    follow: str | None = None,
    keep: bool = False,
    token: str | None = None,
    sneak: str | None = None,
) -> None:
    fragment = {"api": service.url, "token": token or service.token}
    if follow is not None:
        fragment["follow"] = follow
    if keep:
        fragment["keep"] = "1"
    if sneak is not None:
        fragment["sneak"] = sneak
    page.goto(f"{origin}/index.html#{urlencode(fragment)}")
    expect(page.locator("#origin")).to_have_text(origin)


def finished_task(service: Service) -> str:
    """A task created and finished outside the browser (the offline engine completes it)."""
    created = httpx.post(
        f"{service.url}/api/v1/utils/ai-tasks/",
        json={"title": "made by the test", "task_type": "summary",
              "task_config": {"content": "Wind turbines turn wind into electricity. " * 8}},
        headers=service.headers,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    task_id = str(created.json()["id"])
    url = f"{service.url}/api/v1/utils/ai-tasks/{task_id}/"
    block_for_value(
        lambda: httpx.get(url, headers=service.headers).json()["status"],
        lambda status: status in FINAL,
        30,
        every=0.05,
    )
    return task_id


def titles(service: Service) -> list[str]:
    listed = httpx.get(
        f"{service.url}/api/v1/utils/ai-tasks/", params={"page_size": 100}, headers=service.headers
    )
    assert listed.status_code == 200, listed.text
    return [task["title"] for task in listed.json()["results"]]


def test_a_page_on_a_listed_origin_creates_a_task_follows_it_and_reads_its_final_state(
    page: Page, origins: Origins
) -> None:
    open_page(page, origins.listed, origins.service)

    expect(page.locator("#socket")).to_have_text("open")
    expect(page.locator("#created")).to_have_text("pending")
    # The write's position is readable: a page can pass it on as min_position.
    expect(page.locator("#write-position")).to_have_text(re.compile(r"^\d+$"))
    expect(page.locator("#stream")).to_have_text("ended")
    expect(page.locator("#final")).to_have_text("completed")
    task_id = page.locator("#task-id").inner_text()
    live = int(page.locator("#live-count").inner_text())
    assert live >= 3, page.locator("#timeline").inner_text()  # created, started, ..., completed
    # Every update the stream showed is in the read made with the final one's position.
    expect(page.locator("#stored-count")).to_have_text(str(live))
    expect(page.locator("#timeline li").last).to_contain_text("completed")
    # The WebSocket from the same page saw the task finish too.
    expect(page.locator("#socket-finals")).to_contain_text(f"{task_id} completed")
    expect(page.locator("#errors li")).to_have_count(0)
    assert f"From {origins.listed}" in titles(origins.service)


def test_a_listed_page_uses_the_services_client_js_imported_across_origins(
    page: Page, origins: Origins
) -> None:
    fragment = urlencode({"api": origins.service.url, "token": origins.service.token})
    page.goto(f"{origins.listed}/client.html#{fragment}")

    expect(page.locator("#final")).to_have_text("completed")
    expect(page.locator("#states")).to_have_text("connecting live ended")
    live = page.locator("#live-count").inner_text()
    assert int(live) >= 3, live
    expect(page.locator("#stored-count")).to_have_text(live)
    expect(page.locator("#error")).to_have_text("-")


def test_a_listed_page_reads_why_it_was_refused(page: Page, origins: Origins) -> None:
    forged = mint_token("not the service's secret, 32+ bytes", "local")
    open_page(page, origins.listed, origins.service, token=forged)

    # The 401's problem details carry the CORS headers: the page reads our message, not a
    # network error; the WebSocket is accepted to say why, then closed with 4401.
    expect(page.locator("#errors li")).to_have_text([re.compile(r"^create: Error: 401 \S")])
    expect(page.locator("#socket")).to_have_text("closed 4401")


def test_the_same_page_on_an_unlisted_origin_cannot_create_read_stream_or_open_a_socket(
    page: Page, origins: Origins
) -> None:
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    open_page(page, origins.unlisted, origins.service)

    # The preflight is refused, so the POST is never sent: no task from that origin exists.
    expect(page.locator("#errors li")).to_have_text(["create: TypeError: Failed to fetch"])
    expect(page.locator("#socket")).to_have_text("refused 1006")
    expect(page.locator("#created")).to_have_text("-")
    assert f"From {origins.unlisted}" not in titles(origins.service)
    # The page learns nothing; its developer does, from the console.
    assert any("blocked by CORS policy" in line for line in console), console


def test_an_unlisted_page_changes_nothing_with_requests_the_browser_sends_unasked(
    page: Page, origins: Origins
) -> None:
    service = origins.service
    task_id = service.held_task("running while another site tries", "cross-origin-sneak")
    assert service.held.seen("cross-origin-sneak").wait(30), "the worker never fetched the page"
    url = f"{service.url}/api/v1/utils/ai-tasks/{task_id}/"

    def status() -> str:
        return str(httpx.get(url, headers=service.headers).json()["status"])

    try:
        # The worker has stored Started; the read model shows it a moment later.
        block_until(lambda: status() == "running", every=0.02)
        open_page(page, origins.unlisted, service, sneak=task_id)
        expect(page.locator("#sneaked")).to_have_text("answered")
        # Both were answered (opaque to the page) before this read: neither was acted on.
        task = httpx.get(url, headers=service.headers)
        assert task.json()["status"] == "running", task.text
        assert "sneaked in" not in titles(service)
        expect(page.locator("#errors li")).to_have_count(0)
    finally:
        service.held.release("cross-origin-sneak")


def test_a_tasks_stream_gives_its_updates_to_a_listed_page_and_none_to_an_unlisted_one(
    page: Page, origins: Origins
) -> None:
    task_id = finished_task(origins.service)

    open_page(page, origins.unlisted, origins.service, follow=task_id)
    expect(page.locator("#stream")).to_have_text("refused")
    expect(page.locator("#errors li")).to_have_text(
        ["stream: Error: closed after 0 messages", "read: TypeError: Failed to fetch"]
    )
    expect(page.locator("#live-count")).to_have_text("0")
    expect(page.locator("#timeline li")).to_have_count(0)
    expect(page.locator("#final")).to_have_text("-")

    # The same task's stream, from the listed origin: its whole history, then the reads.
    open_page(page, origins.listed, origins.service, follow=task_id)
    expect(page.locator("#stream")).to_have_text("ended")
    expect(page.locator("#final")).to_have_text("completed")
    live = page.locator("#live-count").inner_text()
    assert int(live) >= 3, page.locator("#timeline").inner_text()
    expect(page.locator("#stored-count")).to_have_text(live)
    expect(page.locator("#errors li")).to_have_count(0)


def test_a_listed_pages_stream_reconnects_with_last_event_id_and_follows_a_retry(
    page: Page, origins: Origins
) -> None:
    service = origins.service
    task_id = service.held_task("cancelled, then retried", "cross-origin-retry")
    assert service.held.seen("cross-origin-retry").wait(30), "the worker never fetched the page"
    open_page(page, origins.listed, service, follow=task_id, keep=True)
    expect(page.locator("#timeline li").last).to_contain_text("running")

    cancelled = httpx.post(f"{service.url}/api/v1/utils/ai-tasks/{task_id}/cancel/",
                           headers=service.headers)  # fmt: skip
    assert cancelled.status_code == 200, cancelled.text
    expect(page.locator("#final")).to_have_text("cancelled")
    # The stream ended; EventSource came back by itself with Last-Event-ID (no repeats below
    # show it was sent) and was let in: it waits for the retry.
    expect(page.locator("#reconnects")).not_to_have_text("0")
    expect(page.locator("#stream")).to_have_text("open")

    service.held.release("cross-origin-retry")
    retried = httpx.post(f"{service.url}/api/v1/utils/ai-tasks/{task_id}/retry/",
                         headers=service.headers)  # fmt: skip
    assert retried.status_code == 200, retried.text
    expect(page.locator("#timeline li").last).to_contain_text("completed")
    positions = [int(t.split()[0]) for t in page.locator("#timeline li").all_inner_texts()]
    assert positions == sorted(set(positions)), positions  # every update once, in order
    kinds = [t.split()[1] for t in page.locator("#timeline li").all_inner_texts()]
    assert {"cancelled", "retried", "completed"} <= set(kinds), kinds
    expect(page.locator("#errors li")).to_have_count(0)


def test_client_js_imports_across_origins_after_the_services_own_page_cached_it(
    page: Page, origins: Origins
) -> None:
    # The service's own dashboard loads it first (same origin, no Origin header sent).
    page.goto(f"{origins.service.url}/dashboard/client.js")
    fragment = urlencode({"api": origins.service.url, "token": origins.service.token})
    page.goto(f"{origins.listed}/client.html#{fragment}")
    expect(page.locator("#final")).to_have_text("completed")
    expect(page.locator("#error")).to_have_text("-")
