"""CPU per request of the API's own layers: the app `create_app` builds, driven over ASGI in-process.

One extra route with the create's signature (a JSON body of TaskCreate, the actor, the deps, the
Idempotency-Key header) answers 201 with a small view, so each request crosses what every
create crosses before and after its command: uvicorn's scope aside, Litestar's routing, our
middleware (trace, metrics, query token, Vary), the JSON-body check, the token (verified, then
from the token cache), the dependencies, the body's decoding and the response's encoding. No
server, no socket, no store: the figure is thread CPU per request in one process, steady enough
to tell a cut of a few microseconds, which per-process CPU under wrk on a shared machine cannot.
Prints figures; asserts nothing.

    python bench/bench_api_layers.py [--requests 20000] [--rounds 3]

Run it with PYTHONPATH=<tree>/src to compare two trees (alternate them).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from litestar import Response, post
from litestar.params import JSONBody

from agenttasks.api.app import create_app
from agenttasks.api.auth import mint_token
from agenttasks.api.deps import ApiConfig, ApiDeps, CurrentActor, Deps
from agenttasks.api.schemas import TaskCreate
from agenttasks.api.tasks import IdempotencyKey

SECRET = "s" * 40
BODY = json.dumps(
    {"title": "bench", "task_type": "summary", "task_config": {"content": "Some text."}}
).encode()


class View(msgspec.Struct):
    """A small answer, as a create's view is encoded by the same encoder."""

    title: str
    created_by: str


@post("/bench/create/", status_code=201)
async def create_like(
    data: JSONBody[TaskCreate],
    actor: CurrentActor,
    deps: Deps,
    idempotency_key: IdempotencyKey = None,
) -> Response[View]:
    """The create's signature and answer shape, without the command."""
    return Response(View(data.title, actor.user_id), headers={"X-Position": "1"})


@asynccontextmanager
async def no_deps() -> AsyncIterator[ApiDeps]:
    # An ApiDeps with no collaborators: the route reads nothing from it, but Litestar checks
    # the actor's dependency on it by type.
    yield ApiDeps.__new__(ApiDeps)


async def one(app: Any, headers: list[tuple[bytes, bytes]]) -> int:
    sent: list[Any] = []
    done = False

    async def receive() -> dict[str, Any]:
        nonlocal done
        if done:
            await asyncio.Event().wait()  # a real server blocks until the client disconnects
        done = True
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/bench/create/",
        "raw_path": b"/bench/create/",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    await app(scope, receive, send)
    return int(sent[0]["status"])


async def measure(requests: int, rounds: int) -> list[float]:
    app = create_app(ApiConfig(jwt_secret=SECRET, extra_route_handlers=(create_like,)), no_deps)
    token = mint_token(SECRET, "bench-user")
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"authorization", f"Bearer {token}".encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
    ]
    figures = []
    async with app.lifespan():
        for _ in range(500):  # warm-up: caches, the token's first verification
            status = await one(app, headers)
            assert status == 201, status
        for _ in range(rounds):
            gc.collect()
            start = time.thread_time()
            for _ in range(requests):
                await one(app, headers)
            figures.append((time.thread_time() - start) / requests * 1e6)
    return figures


def main() -> None:
    """Prints the CPU microseconds per request of each round, and their median."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    figures = asyncio.run(measure(args.requests, args.rounds))
    rounds = " ".join(f"{figure:.1f}" for figure in figures)
    print(f"CPU us per request: {rounds} (median {statistics.median(figures):.1f})")


if __name__ == "__main__":
    main()
