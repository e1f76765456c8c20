"""Several background roles in one process: `agenttasks run relay,project,deliver,maintain`.

Each role runs the code of its own command (roles.py) as an asyncio task of one event loop,
with its own connections (its NATS user, its event store, its sessions). A Python process with
psycopg, nats-py and msgspec loaded holds ~40 MB before it does anything, so `up` runs these
light roles in one (issue 17, target 4); one role per container stays the production shape.

A role that ends by itself (a crash, or a return) stops the others, which end as on SIGTERM,
and then the process exits with that role's error. The supervisor starts the process again and
each role resumes from what it stored (the relay from its published mark, the projector from
its tracking rows, the deliverer from its durable consumer): running on without the dead role
would hide the failure from the supervisor.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agenttasks.observability import context

log = logging.getLogger(__name__)

ROLES = ("relay", "project", "deliver", "maintain")
LOG_NAMES = {"project": "projector"}  # what a role's log lines say (as cli.ROLE_OF)
STOP_SECONDS = 6.0  # after one role failed, the others' bound (the supervisor's SIGKILL: 8 s)

Main = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


def parse_roles(text: str) -> tuple[str, ...]:
    """The roles of `run ROLES` (comma-separated), or ValueError saying what is wrong."""
    chosen = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in chosen if name not in ROLES]
    if unknown or not chosen:
        raise ValueError(
            f"unknown role(s) {', '.join(unknown) or '(none given)'}; one process can run "
            f"{', '.join(ROLES)}"
        )
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"a role is named twice in {text!r}")
    return chosen


def log_name(role: str) -> str:
    """The name a role's log lines carry."""
    return LOG_NAMES.get(role, role)


async def run_together(mains: Mapping[str, Main], stop: asyncio.Event) -> None:
    """Runs each role's main as its own task until `stop`; one ending stops the others."""
    loop = asyncio.get_running_loop()
    # Each role alone had the default pool (cores + 4 threads) to itself: keep that per role,
    # so one role's blocking calls (a projector batch, a relay read) never queue another's.
    workers = min(32, ((os.cpu_count() or 1) + 4) * len(mains))
    loop.set_default_executor(ThreadPoolExecutor(workers, thread_name_prefix="role"))
    tasks: dict[asyncio.Task[None], str] = {}
    for role, main in mains.items():
        # The task's context names the role: its log lines, and those of every task and
        # to_thread call it starts (nats-py's reader, the store's calls), say which role.
        scope = contextvars.copy_context()
        scope.run(context.role_of_task.set, log_name(role))
        tasks[loop.create_task(main(stop), name=role, context=scope)] = role
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    began = loop.time()

    def ended(task: asyncio.Task[None]) -> None:  # which role a slow stop waits on, at DEBUG
        log.debug("%s ended, %.2fs after the first of them", tasks[task], loop.time() - began)

    for task in tasks:
        task.add_done_callback(ended)
    # On SIGTERM each role takes the time it would take alone (the supervisor's SIGKILL bounds
    # it); after a failure the others are bounded here, so the restart is not held up.
    bound = None if stop.is_set() else STOP_SECONDS
    if not stop.is_set():
        first = next(iter(done))
        error = None if first.cancelled() else first.exception()
        log.error(
            "%s %s; stopping the other roles of this process (%s) so that it is restarted",
            tasks[first],
            f"failed ({type(error).__name__})" if error is not None else "ended by itself",
            ", ".join(role for task, role in tasks.items() if task in pending) or "none",
        )
        stop.set()
    if pending:
        _, late = await asyncio.wait(pending, timeout=bound)
        for task in late:
            log.warning("%s did not stop in %.0fs; cancelling it", tasks[task], bound)
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
    # The first error wins (it is why the others stopped); the rest are logged, not lost.
    failures = [
        (task, error)
        for task in [*done, *pending]
        if not task.cancelled() and (error := task.exception()) is not None
    ]
    for task, error in failures[1:]:
        log.error("%s also failed", tasks[task], exc_info=error)
    if failures:
        raise failures[0][1]
