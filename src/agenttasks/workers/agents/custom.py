"""custom: an ordered chain of steps; each step may use the outputs of the steps before it.

A step is a text instruction (a prompt on the previous output) or an object naming an action.
`input` defaults to the previous step's output; `{{previous}}` and `{{steps.N}}` (1-based) in
`input` or `instruction` are replaced by earlier outputs.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from agenttasks.workers.agents.common import ask_model, engine_fields
from agenttasks.workers.analysis import DataError, analyse
from agenttasks.workers.context import AgentContext
from agenttasks.workers.errors import AgentError
from agenttasks.workers.fetch import FetchError
from agenttasks.workers.offline.drafting import draft
from agenttasks.workers.offline.passages import Document, key_findings, relevant_passages
from agenttasks.workers.offline.summarize import summarize

# Later steps get each output whole; the result keeps the start of each, so a chain of fetched
# pages stays well inside a result's size limit. `final` is kept whole.
STEP_OUTPUT_KEPT = 4000

_REFERENCE = re.compile(r"\{\{\s*(previous|steps\.(\d+))\s*\}\}")
SYSTEM = "You carry out one step of a larger task. Answer with the step's output only."


async def run(ctx: AgentContext) -> dict[str, Any]:
    steps: list[Any] = ctx.config["steps"]
    outputs: list[str] = []
    done: list[dict[str, Any]] = []
    for index, raw in enumerate(steps):
        step = {"action": "prompt", "instruction": raw} if isinstance(raw, str) else dict(raw)
        name = step.get("name") or f"{index + 1}. {step['action']}"
        await ctx.progress(100 * index // len(steps), f"Step {index + 1}/{len(steps)}: {name}")
        output = await _run_step(ctx, step, outputs)
        outputs.append(output)
        done.append({"name": name, "action": step["action"], **_kept(output)})
        await ctx.note(
            f"Step {index + 1} done: {name}", {"step": index + 1, "output": output[:2000]}
        )
    return {"steps": done, "final": outputs[-1], **engine_fields(ctx)}


def _kept(output: str) -> dict[str, Any]:
    if len(output) <= STEP_OUTPUT_KEPT:
        return {"output": output}
    return {"output": output[:STEP_OUTPUT_KEPT], "truncated": True, "output_chars": len(output)}


async def _run_step(ctx: AgentContext, step: dict[str, Any], outputs: list[str]) -> str:
    action = step["action"]
    instruction = _fill(step.get("instruction") or "", outputs)
    given = step.get("input")
    text = _fill(given, outputs) if given is not None else (outputs[-1] if outputs else "")
    if action == "fetch":
        if not step.get("url"):
            raise AgentError("invalid_input", "a fetch step needs `url`")
        try:
            page = await ctx.fetcher.fetch(step["url"])
        except FetchError as error:
            raise AgentError(
                error.kind, str(error), transient=error.transient, retry_after=error.retry_after
            ) from None
        return page.text
    if action == "summarize":
        words = int(step.get("max_length") or 150)
        if ctx.llm is not None:
            return await ask_model(ctx, SYSTEM, f"Summarise in at most {words} words:\n\n{text}")
        return await asyncio.to_thread(summarize, text, words)
    if action == "extract":
        if ctx.llm is not None:
            what = instruction or "the key facts"
            return await ask_model(ctx, SYSTEM, f"Extract {what} from:\n\n{text}")
        docs = [Document("input", text)]
        if instruction:
            found = await asyncio.to_thread(relevant_passages, instruction, docs, 5)
            return "\n".join(f"- {p.text}" for p in found)
        return "\n".join(f"- {s}" for s in await asyncio.to_thread(key_findings, docs, 5))
    if action == "analyze":
        try:
            figures = await asyncio.to_thread(analyse, _data_of(step, text), "statistical")
        except DataError as error:
            raise AgentError("invalid_input", f"analyze step: {error}") from None
        return json.dumps(figures)
    if action == "generate":
        topic = instruction or text[:200] or "the topic"
        if ctx.llm is not None:
            return await ask_model(ctx, SYSTEM, f"Write about: {topic}\n\nContext:\n{text}")
        written = await asyncio.to_thread(draft, topic, "article", 300, "informative", [])
        return written.content
    return await _prompt(ctx, instruction, text)


async def _prompt(ctx: AgentContext, instruction: str, text: str) -> str:
    if ctx.llm is not None:
        return await ask_model(ctx, SYSTEM, f"{instruction}\n\n{text}".strip())
    # No model: say so, and do the honest part an extractive engine can do.
    if not text:
        return f"[offline engine: no language model is configured to carry out: {instruction}]"
    found = await asyncio.to_thread(relevant_passages, instruction, [Document("input", text)], 3)
    passages = "\n".join(f"- {p.text}" for p in found) or "- (nothing in the input matches)"
    note = "[offline engine: no language model; passages of the input relevant to the step]"
    return f"{note}\n{passages}"


def _fill(template: str, outputs: list[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(1) == "previous":
            return outputs[-1] if outputs else ""
        number = int(match.group(2))
        if not 1 <= number <= len(outputs):
            raise AgentError(
                "invalid_input", f"{{{{steps.{number}}}}} refers to a step not yet run"
            )
        return outputs[number - 1]

    return _REFERENCE.sub(replace, template)


def _data_of(step: dict[str, Any], text: str) -> Any:
    if step.get("data"):
        return step["data"]
    try:
        data = json.loads(text)
    except ValueError:
        raise AgentError(
            "invalid_input", "an analyze step needs `data`, or JSON data as input"
        ) from None
    if isinstance(data, dict) and "statistics" not in data:
        return data
    raise AgentError("invalid_input", "an analyze step's input is not a JSON object of series")
