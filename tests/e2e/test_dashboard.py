"""The dashboard in a real headless Chromium against a real `agenttasks up`.

One `up` (offline engine) serves the whole module; its fetch allow-list lets custom tasks fetch
a loopback page that the test holds open until it says so, which makes a task that stays
running for exactly as long as a test needs. Screenshots of the main pages go to
tests/e2e/screenshots/ for a person to look at.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psutil
import pytest
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright

from tests.conftest import free_port
from tests.e2e.up_output import banner_shown
from tests.fakes.llm_server import FakeLlm, reply, serve_llm
from tests.fakes.websites import ARTICLES, article_html
from tests.waiting import block_for_value, block_until

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOTS = Path(__file__).parent / "screenshots"
WAIT_MS = 30_000  # Playwright's patience for anything that should happen "soon"
expect.set_options(timeout=WAIT_MS)  # assertions too (theirs is 5 s): a loaded CI machine is slow
HOSTILE = "<script>alert(1)</script> Solar notes"


class HeldPages:
    """Loopback pages whose answer waits until the test releases them (`/held/<name>`)."""

    def __init__(self) -> None:
        self.gates: dict[str, threading.Event] = {}
        self.requested: dict[str, threading.Event] = {}
        self.lock = threading.Lock()
        held = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.rsplit("/", 1)[-1]
                held.seen(name).set()
                held.gate(name).wait(60)
                body = article_html(*ARTICLES["/solar"])
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(ConnectionError):  # a cancelled fetch hung up
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def gate(self, name: str) -> threading.Event:
        with self.lock:
            return self.gates.setdefault(name, threading.Event())

    def seen(self, name: str) -> threading.Event:
        with self.lock:
            return self.requested.setdefault(name, threading.Event())

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/held/{name}"

    def release(self, name: str) -> None:
        self.gate(name).set()

    def __enter__(self) -> HeldPages:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for gate in list(self.gates.values()):
            gate.set()
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Service:
    url: str
    token: str
    link: str  # the signed-in dashboard link `up` prints
    process: subprocess.Popen[bytes]
    held: HeldPages
    log: Path
    home: Path
    killed: list[int] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def create_task(self, title: str, task_type: str, config: dict[str, object]) -> str:
        answer = httpx.post(
            f"{self.url}/api/v1/utils/ai-tasks/",
            json={"title": title, "task_type": task_type, "task_config": config},
            headers=self.headers,
        )
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    def held_task(self, title: str, name: str) -> str:
        return self.create_task(
            title, "custom", {"steps": [{"action": "fetch", "url": self.held.url(name)}]}
        )

    def wait_for_usage(self, template_id: str | None) -> None:
        """Until the template-usage read model counts a task made from the template."""
        url = f"{self.url}/api/v1/utils/ai-task-templates/{template_id}/"
        block_for_value(
            lambda: httpx.get(url, headers=self.headers).json()["usage"],
            lambda usage: usage["usage_count"] >= 1,
            30,
            every=0.1,
        )

    def mint(self, user: str, ttl: int) -> str:
        """A token from `agenttasks token`, run against this `up`'s data directory."""
        command = [sys.executable, "-m", "agenttasks.cli", "--data-dir", str(self.home),
                   "token", user, "--ttl", str(ttl)]  # fmt: skip
        return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text().splitlines()[-lines:])

    def api_process(self) -> psutil.Process:
        children = psutil.Process(self.process.pid).children()
        # [python, -m, agenttasks.cli, api, --log-level, LEVEL]: the role follows the module.
        return next(c for c in children if c.cmdline()[3:4] == ["api"])


@contextlib.contextmanager
def running_up(home: Path, held: HeldPages, **settings: str) -> Iterator[Service]:
    """`agenttasks up` in `home` with the given settings; stopped, with all it ran, at the end."""
    log = home.parent / f"{home.name}-up.log"
    port, nats_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTTASKS_", "OPENAI_"))}
    env["AGENTTASKS_FETCH_ALLOWED_HOSTS"] = "127.0.0.1"
    env.update(settings)
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "agenttasks.cli", "--data-dir", str(home), "up",
             "--port", str(port), "--nats-port", str(nats_port)],
            stdout=output, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        descendants: list[psutil.Process] = []
        try:
            block_until(lambda: banner_shown(process, log), 60, every=0.1, explain=log.read_text)
            text = log.read_text()
            token = re.search(r"Token:\s+(\S+)", text)
            link = re.search(r"Browser:\s+(\S+)", text)
            assert token, text
            assert link, text
            descendants = psutil.Process(process.pid).children(recursive=True)
            yield Service(f"http://127.0.0.1:{port}", token[1], link[1], process, held, log, home)
        finally:
            # The API may have been restarted by a test: stop whatever `up` runs now.
            descendants += psutil.Process(process.pid).children(recursive=True)
            process.send_signal(signal.SIGINT)
            process.wait(30)
            _, alive = psutil.wait_procs(set(descendants), timeout=10)
            for leftover in alive:
                leftover.kill()
    assert process.returncode == 0, log.read_text()
    assert alive == [], f"left running: {alive}"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One `up` on the offline engine for the module."""
    home = tmp_path_factory.mktemp("dashboard") / "home"
    # Heartbeats every second: the Workers page shows a task running within a refresh or two.
    with HeldPages() as held, running_up(home, held, AGENTTASKS_WORKER_HEARTBEAT_SECONDS="1") as up:
        yield up


@contextlib.contextmanager
def fake_llm_in_a_thread() -> Iterator[FakeLlm]:
    """The loopback OpenAI-compatible server, on its own event loop (these tests are sync)."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    served: list[FakeLlm] = []
    ready = threading.Event()

    async def serve() -> None:
        async with serve_llm() as fake:
            served.append(fake)
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10), "the fake model server did not start"
    try:
        yield served[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="module")
def model_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, FakeLlm]]:
    """A second `up` whose worker asks the fake model (engine `openai`), for streamed text."""
    home = tmp_path_factory.mktemp("dashboard-model") / "home"
    with (
        fake_llm_in_a_thread() as fake,
        HeldPages() as held,
        running_up(
            home,
            held,
            OPENAI_API_KEY="test-key",
            OPENAI_BASE_URL=fake.base_url,
            AGENTTASKS_MODEL="fake-gpt",
        ) as up,
    ):
        yield up, fake


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    SCREENSHOTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@contextlib.contextmanager
def signed_in(browser: Browser, service: Service) -> Iterator[Page]:
    """A fresh browser context, signed in through the link `agenttasks up` printed."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    dialogs: list[str] = []
    errors: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(service.link)
    expect(page.locator("#tasks")).to_be_visible()
    expect(page.locator("#connection")).to_have_text("live")
    try:
        yield page
        assert errors == [], errors
        assert dialogs == [], f"a dialog opened: {dialogs}"
    finally:
        context.close()


@pytest.fixture
def page(browser: Browser, service: Service) -> Iterator[Page]:
    with signed_in(browser, service) as page:
        yield page


def go(page: Page, service: Service, route: str) -> None:
    page.goto(f"{service.url}/{route}")


def test_a_task_created_through_the_form_completes_live_and_its_title_stays_text(
    page: Page, service: Service
) -> None:
    assert "#token=" not in page.url, "the token is taken out of the address bar"
    go(page, service, "#/new?type=summary")
    page.fill("#field-title", HOSTILE)
    page.fill("#field-content", " ".join(ARTICLES["/solar"][1]))
    page.fill("#field-max_length", "40")
    page.click("#create")

    expect(page.locator("#task-title")).to_have_text(HOSTILE)
    expect(page.locator("#task-header [data-status]")).to_have_text("completed")
    expect(page.locator("#task-progress")).to_have_text(" 100%")
    expect(page.locator("#result .markdown").first).to_contain_text("Solar")
    kinds = page.locator("#timeline .kind").all_text_contents()
    assert kinds[0] == "created", kinds
    assert kinds[-1] == "completed", kinds
    assert kinds[-2] == "model_call", kinds  # the offline engine's call, at no cost
    expect(page.locator("#task-cost")).to_have_text("$0 (offline engine)")  # free, and why
    page.click("#raw-events summary")
    expect(page.locator("#events table tbody tr").first).to_be_visible()
    page.screenshot(path=SCREENSHOTS / "task.png", full_page=True)

    go(page, service, "#/tasks")
    row = page.locator("#task-rows tr", has_text=HOSTILE)
    expect(row).to_have_count(1)
    expect(row.locator("[data-status]")).to_have_text("completed")
    expect(row.locator(".cost-cell")).to_have_text("$0 (offline engine)")
    assert page.locator("main script").count() == 0
    page.screenshot(path=SCREENSHOTS / "tasks.png", full_page=True)

    page.fill("#filter-search", "no such title")
    page.click("#filters-submit")
    expect(page.locator("#task-rows")).to_have_text("No tasks match.")
    page.fill("#filter-search", "solar NOTES")
    page.click("#filters-submit")
    expect(page.locator("#task-rows tr", has_text=HOSTILE)).to_have_count(1)
    page.select_option("#filter-status", "failed")
    expect(page.locator("#task-rows")).to_have_text("No tasks match.")


def test_the_task_page_reads_the_finished_task_once_with_the_final_updates_position(
    page: Page, service: Service
) -> None:
    # No polling (issue 14): one read that reflects the final update, by its position.
    reads: list[str] = []
    page.on("request", lambda r: reads.append(r.url) if "/ai-tasks/" in r.url else None)
    go(page, service, "#/new?type=summary")
    page.fill("#field-title", "read once")
    page.fill("#field-content", " ".join(ARTICLES["/solar"][1]))
    with page.expect_request(lambda r: "min_position=" in r.url) as final_read:
        page.click("#create")
    expect(page.locator("#task-header [data-status]")).to_have_text("completed")
    last = page.locator("#timeline li").last.get_attribute("data-position")
    assert final_read.value.url.endswith(f"/?min_position={last}"), final_read.value.url
    task_reads = [u for u in reads if re.search(r"/ai-tasks/[0-9a-f-]{36}/(\?|$)", u)]
    assert len(task_reads) == 2, task_reads  # the page's first read and the final one


def test_markdown_in_a_result_is_rendered_without_its_markup_running(
    page: Page, service: Service
) -> None:
    go(page, service, "#/new?type=content_generation")
    page.fill("#field-title", "Sanitised")
    page.fill("#field-topic", '<img src=x onerror="alert(2)"> Wind <b>power</b>')
    page.fill("#field-length", "60")
    page.click("#create")
    expect(page.locator("#task-header [data-status]")).to_have_text("completed")
    markdown = page.locator("#result .markdown").first
    expect(markdown).to_contain_text("Wind")
    assert page.locator("#result [onerror]").count() == 0
    assert page.locator("#result script").count() == 0


def test_the_client_module_joins_partial_results_and_drops_repeats(page: Page) -> None:
    joined = page.evaluate(
        """async () => {
            const { PartialText } = await import("/dashboard/client.js");
            const text = new PartialText();
            const piece = (offset, t) => ({ data: { data: { partial: { offset, text: t } } } });
            for (const p of [piece(0, "Hel"), piece(3, "lo "), piece(0, "Hel"), piece(3, "lo "),
                             piece(6, "world"), { data: {} }]) text.add(p);
            return text.text;
        }"""
    )
    assert joined == "Hello world"


def test_the_client_module_reads_the_flat_partial_of_result_updates(page: Page) -> None:
    joined = page.evaluate(
        """async () => {
            const { PartialText } = await import("/dashboard/client.js");
            const text = new PartialText();
            // As the API sends them now: the piece flat (and nested, for older readers); other
            // updates with `partial: null`.
            const piece = (offset, t) => ({ partial: { offset, text: t }, data: { data: {} } });
            for (const p of [{ partial: null, data: {} }, piece(0, "Hel"), piece(3, "lo "),
                             piece(3, "lo "), piece(6, "world"), { partial: null, data: {} }])
              text.add(p);
            return text.text;
        }"""
    )
    assert joined == "Hello world"


def test_validation_errors_show_beside_the_field_that_caused_them(
    page: Page, service: Service
) -> None:
    go(page, service, "#/new?type=content_generation")
    page.fill("#field-title", "Too long")
    page.fill("#field-topic", "Wind")
    page.fill("#field-length", "999999")
    page.click("#create")
    expect(page.locator("#error-length")).to_contain_text("task_config.length")
    expect(page.locator("#field-length")).to_have_class(re.compile("invalid"))
    expect(page.locator("#error-topic")).to_have_text("")
    page.screenshot(path=SCREENSHOTS / "create-errors.png", full_page=True)


def test_cancel_and_retry_from_the_task_page_and_the_list(page: Page, service: Service) -> None:
    go(page, service, "#/new?type=custom")
    page.fill("#field-title", "Held fetch")
    page.fill("#field-steps", f'[{{"action": "fetch", "url": "{service.held.url("cancel")}"}}]')
    page.click("#create")
    expect(page.locator("#task-header [data-status]")).to_have_text("running")
    assert service.held.seen("cancel").wait(30), "the worker never fetched the held page"
    page.click("#cancel")
    expect(page.locator("#task-header [data-status]")).to_have_text("cancelled")
    expect(page.locator("#timeline .kind").last).to_have_text("cancelled")

    page.click("#retry")
    expect(page.locator("#task-header [data-status]")).to_have_text(re.compile("pending|running"))
    expect(page.locator("#timeline .kind", has_text="retried")).to_have_count(1)
    task_id = page.url.rsplit("/", 1)[-1]

    go(page, service, "#/tasks")
    row = page.locator(f'#task-rows tr[data-task-id="{task_id}"]')
    row.locator("button.cancel").click()
    expect(row.locator("[data-status]")).to_have_text("cancelled")
    expect(row.locator("button.retry")).to_be_visible()


def test_an_admin_cancels_and_retries_many_tasks_at_once(page: Page, service: Service) -> None:
    ids = [service.held_task(f"Bulk {n}", f"bulk-{n}") for n in range(3)]
    go(page, service, "#/tasks")
    for task_id in ids:
        page.locator(f'#task-rows tr[data-task-id="{task_id}"] input.select').check()
    expect(page.locator("#bulk-count")).to_have_text("3 selected")
    page.click("#bulk-cancel")
    expect(page.locator("#list-message")).to_contain_text("cancel: 3 of 3 done")
    for task_id in ids:
        row = page.locator(f'#task-rows tr[data-task-id="{task_id}"]')
        expect(row.locator("[data-status]")).to_have_text("cancelled")
    page.click("#bulk-retry")  # the same three are still selected
    expect(page.locator("#list-message")).to_contain_text("retry: 3 of 3 done")
    for task_id in ids:
        row = page.locator(f'#task-rows tr[data-task-id="{task_id}"]')
        expect(row.locator("[data-status]")).to_have_text(re.compile("pending|running"))


def test_templates_statistics_and_a_task_from_a_template(page: Page, service: Service) -> None:
    go(page, service, "#/templates")
    page.click("#new-template")
    page.fill("#template-name", "Short summary")
    page.select_option("#template-task_type", "summary")
    page.fill(
        "#template-default_config", '{"content": "Wind turbines turn moving air into power."}'
    )
    page.fill("#template-config_schema", '{"type": "nonsense"}')
    page.click("#save-template")
    expect(page.locator("#template-error-config_schema")).not_to_have_text("")
    page.fill("#template-config_schema", '{"type": "object"}')
    page.click("#save-template")
    row = page.locator("#template-rows tr", has_text="Short summary")
    expect(row).to_have_count(1)
    page.screenshot(path=SCREENSHOTS / "templates.png", full_page=True)

    template_id = row.get_attribute("data-template-id")
    row.locator("button.revise").click()
    page.fill("#template-description", "Revised once")
    page.click("#save-template")
    expect(row).to_contain_text("Revised once")
    expect(row.locator("td").nth(2)).to_have_text("2")

    row.locator("button.use").click()
    page.fill("#field-title", "From the template")
    page.click("#create")
    expect(page.locator("#task-header [data-status]")).to_have_text("completed")
    expect(page.locator("#result .markdown").first).to_contain_text("Wind")

    service.wait_for_usage(template_id)

    go(page, service, "#/templates")
    row.locator("button.archive").click()
    expect(row).to_have_count(0)
    page.check("#show-archived")
    expect(row).to_contain_text("(archived)")

    go(page, service, "#/stats")
    expect(page.locator("#total")).not_to_have_text("0")
    expect(page.locator("#stats-body canvas").first).to_be_visible()
    expect(page.locator("#stats-body")).to_contain_text("Short summary")
    expect(page.locator("#total-cost")).to_have_text("$0")  # the offline engine costs nothing
    expect(page.locator("#cost-by-type")).to_contain_text("summary")
    page.screenshot(path=SCREENSHOTS / "statistics.png", full_page=True)


def test_the_page_says_it_reconnects_when_the_api_restarts_and_then_catches_up(
    page: Page, service: Service
) -> None:
    task_id = service.held_task("Survives a restart", "restart")
    go(page, service, f"#/task/{task_id}")
    expect(page.locator("#task-header [data-status]")).to_have_text("running")
    assert service.held.seen("restart").wait(30)

    service.api_process().kill()  # `up` restarts it, as it would after a crash
    expect(page.locator("#connection")).to_have_text(re.compile("reconnecting"))
    page.screenshot(path=SCREENSHOTS / "reconnecting.png")
    service.held.release("restart")  # the task finishes while the page may be cut off

    try:
        expect(page.locator("#connection")).to_have_text("live")
        expect(page.locator("#task-header [data-status]")).to_have_text("completed")
    except AssertionError as error:  # what `up` and its API said while this happened
        raise AssertionError(f"{error}\n--- up.log (end) ---\n{service.log_tail()}") from None
    positions = [
        int(p)
        for p in page.locator("#timeline li").evaluate_all("l => l.map(e => e.dataset.position)")
    ]
    assert positions == sorted(set(positions)), positions  # every update once, in order
    kinds = page.locator("#timeline .kind").all_text_contents()
    assert kinds.count("created") == 1, kinds
    assert kinds.count("completed") == 1, kinds

    go(page, service, "#/tasks")
    row = page.locator(f'#task-rows tr[data-task-id="{task_id}"]')
    expect(row.locator("[data-status]")).to_have_text("completed")


def test_a_token_that_expires_while_the_page_is_open_signs_out_saying_why(
    browser: Browser, service: Service
) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{service.url}/#token={service.mint('bob', ttl=8)}")
        expect(page.locator("#tasks")).to_be_visible()
        expect(page.locator("#connection")).to_have_text("live")
        expect(page.locator("#signin-error")).to_contain_text("Your token has expired")
        expect(page.locator("#connection")).to_have_text("")  # its streams were closed
    finally:
        context.close()


def test_a_models_answer_grows_on_the_task_page_while_it_streams(
    browser: Browser, model_service: tuple[Service, FakeLlm]
) -> None:
    service, fake = model_service
    words = [f"word{n}" for n in range(80)]
    fake.script(reply(" ".join(words), chunk_delay=0.1))  # about 8 s of streaming
    with signed_in(browser, service) as page:
        task_id = service.create_task(
            "Streamed", "summary", {"content": "Text.", "max_length": 200}
        )
        go(page, service, f"#/task/{task_id}")
        partial = page.locator("#partial")
        expect(partial).to_contain_text("word3")
        early = partial.text_content() or ""
        expect(page.locator("#task-header [data-status]")).to_have_text("completed")
        streamed = partial.text_content() or ""
        result = page.locator("#result").text_content() or ""
        # No AGENTTASKS_PRICES and genai-prices knows no fake-gpt: unknown, never "$0".
        expect(page.locator("#task-cost")).to_have_text("unknown (1 of 1 call without a price)")
    assert "word79" not in early, "the page saw the text only once it was complete"
    assert streamed.split() == words  # the pieces joined by offset: every word once, in order
    assert "word79" in result
    assert "Engine: openai (fake-gpt)" in result


def test_the_workers_page_shows_a_running_worker_and_its_task_to_admins_only(
    browser: Browser, page: Page, service: Service
) -> None:
    task_id = service.held_task("Held for the Workers page", "workers-page")
    try:
        assert service.held.seen("workers-page").wait(30), "the worker never fetched the page"
        page.click("#nav-workers")
        alive = page.locator("#worker-rows tr[data-state='alive']")
        expect(alive.first).to_be_visible()
        expect(alive.locator("a.running-task", has_text=task_id)).to_have_count(1)
        expect(page.locator("#workers-alive")).not_to_have_text("0")
        page.screenshot(path=SCREENSHOTS / "workers.png", full_page=True)
    finally:
        service.held.release("workers-page")
    context = browser.new_context()
    try:
        user_page = context.new_page()
        user_page.goto(f"{service.url}/#token={service.mint('bob', ttl=600)}")
        expect(user_page.locator("#tasks")).to_be_visible()
        expect(user_page.locator("#nav-workers")).to_be_hidden()
        go(user_page, service, "#/workers")
        expect(user_page.locator("main .error")).to_have_text(
            "Only admins see the workers and queues."
        )
    finally:
        context.close()
