"""Several roles in one process (together.py): one stop for all, one crash ends them all."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agenttasks import together
from agenttasks.cli import build_parser
from agenttasks.observability import context
from agenttasks.together import Main, parse_roles, run_together
from tests.waiting import wait_until


class RoleFailed(Exception):
    pass


def waiting_role(log: list[str], name: str) -> Main:
    """A role that works until `stop` and then winds down, as every real role does."""

    async def main(stop: asyncio.Event) -> None:
        log.append(f"{name} started as {context.role()}")
        await stop.wait()
        await asyncio.sleep(0)  # its own clean-up, on the loop
        log.append(f"{name} stopped")

    return main


def failing_role(log: list[str], started: asyncio.Event) -> Main:
    async def main(stop: asyncio.Event) -> None:
        log.append(f"crashing started as {context.role()}")
        await started.wait()
        raise RoleFailed("the relay's connection broke for good")

    return main


async def test_a_stop_ends_every_role_cleanly_and_each_ran_under_its_own_log_name() -> None:
    log: list[str] = []
    stop = asyncio.Event()
    mains = {name: waiting_role(log, name) for name in ("relay", "project", "deliver")}
    running = asyncio.create_task(run_together(mains, stop))
    await wait_until(lambda: len(log) == 3)  # each has started
    stop.set()
    await asyncio.wait_for(running, 5)
    assert sorted(log) == [
        "deliver started as deliver",
        "deliver stopped",
        "project started as projector",
        "project stopped",
        "relay started as relay",
        "relay stopped",
    ]
    assert context.role_of_task.get() is None  # the caller's context is untouched


async def test_one_role_crashing_stops_the_others_and_the_process_ends_with_its_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[str] = []
    stop = asyncio.Event()
    crash = asyncio.Event()
    mains = {
        "relay": failing_role(log, crash),
        "project": waiting_role(log, "project"),
        "maintain": waiting_role(log, "maintain"),
    }
    running = asyncio.create_task(run_together(mains, stop))
    await wait_until(lambda: len(log) == 3)
    crash.set()
    with pytest.raises(RoleFailed), caplog.at_level(logging.ERROR):
        await asyncio.wait_for(running, 5)
    assert stop.is_set()
    assert "project stopped" in log
    assert "maintain stopped" in log
    said = [r.getMessage() for r in caplog.records if r.name == "agenttasks.together"]
    assert said == [
        "relay failed (RoleFailed); stopping the other roles of this process "
        "(project, maintain) so that it is restarted"
    ]


async def test_after_a_failure_a_role_that_does_not_stop_in_time_is_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log: list[str] = []
    stop = asyncio.Event()
    crash = asyncio.Event()

    async def stuck(stop: asyncio.Event) -> None:
        log.append("stuck started")
        try:
            await asyncio.Event().wait()  # ignores stop
        finally:
            log.append("stuck cancelled")

    monkeypatch.setattr(together, "STOP_SECONDS", 0.05)
    mains = {"relay": failing_role(log, crash), "deliver": stuck}
    running = asyncio.create_task(run_together(mains, stop))
    await wait_until(lambda: len(log) == 2)
    crash.set()
    with pytest.raises(RoleFailed):
        await asyncio.wait_for(running, 5)
    assert log[-1] == "stuck cancelled"


async def test_on_a_stop_a_slow_role_is_given_the_time_it_takes_as_it_would_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log: list[str] = []
    stop = asyncio.Event()

    async def slow(stop: asyncio.Event) -> None:
        log.append("slow started")
        await stop.wait()
        await asyncio.sleep(0.2)  # its own wind-down (webhook attempts finishing): 4x the bound
        log.append("slow finished its wind-down")

    monkeypatch.setattr(together, "STOP_SECONDS", 0.05)
    running = asyncio.create_task(
        run_together({"relay": waiting_role(log, "relay"), "deliver": slow}, stop)
    )
    await wait_until(lambda: len(log) == 2)
    stop.set()
    await asyncio.wait_for(running, 5)
    assert log[-1] == "slow finished its wind-down"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("relay,worker", "unknown role(s) worker"),
        ("api", "unknown role(s) api"),
        (",", "(none given)"),
        ("relay,relay", "named twice"),
    ],
)
def test_run_refuses_a_role_it_cannot_share_and_says_which(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_roles(text)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", text])


def test_run_takes_the_roles_in_the_order_given() -> None:
    assert build_parser().parse_args(["run", "maintain, relay"]).roles == ("maintain", "relay")
