"""custom: an ordered chain of steps; each step may use the outputs of the steps before it.

A step is a text instruction (a prompt on the previous output) or an object naming an action.
`input` defaults to the previous step's output; `{{previous}}` and `{{steps.N}}` (1-based) in
`input` or `instruction` are replaced by earlier outputs, `{{custom_config}}` by the task's
free `custom_config` (a string as it is, anything else as JSON). A model step is also shown the
custom_config, when there is one, ahead of its prompt.

A chain can multiply text (a 5 MB page referenced 1,000 times is 5 GB), so what is substituted
into one step, into the whole chain, and what one step hands on are capped (workers/limits.py);
the count stops the moment a cap is passed, before the text is built.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from agenttasks.application.task_configs import STEP_REFERENCE
from agenttasks.workers.agents.common import ask_model, engine_fields
from agenttasks.workers.context import AgentContext
from agenttasks.workers.errors import AgentError
from agenttasks.workers.fetch import FetchError
from agenttasks.workers.limits import Limits, too_large
from agenttasks.workers.offline.drafting import draft
from agenttasks.workers.offline.passages import Document, key_findings, relevant_passages
from agenttasks.workers.offline.statistics import DataError, analyse
from agenttasks.workers.offline.summarize import summarize

# Later steps get each output whole; the result keeps the start of each, so a chain of fetched
# pages stays well inside a result's size limit. `final` is kept whole.
STEP_OUTPUT_KEPT = 4000
STEP_TOKENS = 1500  # max_tokens of one step's model call unless the task config asks for fewer

SYSTEM_PROMPT = "You carry out one step of a larger task. Answer with the step's output only."


class _Substituted:
    """Counts the earlier outputs one step takes in, against the step's and the chain's caps."""

    def __init__(self, limits: Limits, step: int, chain_so_far: int, custom_config: str) -> None:
        self.limits, self.step = limits, step
        self.chars, self.chain = 0, chain_so_far
        self.custom_config = custom_config

    def take(self, text: str) -> str:
        self.chars += len(text)
        self.chain += len(text)
        if self.chars > self.limits.max_step_text_chars:
            raise too_large(
                f"the text substituted into step {self.step} ({self.chars:,} characters so far)",
                self.limits.max_step_text_chars,
                "MAX_STEP_TEXT_CHARS",
            )
        if self.chain > self.limits.max_chain_text_chars:
            raise too_large(
                f"the text substituted into the chain by step {self.step} "
                f"({self.chain:,} characters so far)",
                self.limits.max_chain_text_chars,
                "MAX_CHAIN_TEXT_CHARS",
            )
        return text


async def run(ctx: AgentContext) -> dict[str, Any]:
    steps: list[Any] = ctx.config["steps"]
    outputs: list[str] = []
    done: list[dict[str, Any]] = []
    chain = 0  # characters substituted into the chain so far
    parameters = _parameters(ctx.config.get("custom_config"))
    for index, raw in enumerate(steps):
        step = {"action": "prompt", "instruction": raw} if isinstance(raw, str) else dict(raw)
        name = step.get("name") or f"{index + 1}. {step['action']}"
        await ctx.progress(100 * index // len(steps), f"Step {index + 1}/{len(steps)}: {name}")
        taken = _Substituted(ctx.limits, index + 1, chain, parameters)
        output = await _run_step(ctx, step, outputs, taken)
        chain = taken.chain
        if len(output) > ctx.limits.max_step_output_chars:
            raise too_large(
                f"the output of step {index + 1} ({len(output):,} characters)",
                ctx.limits.max_step_output_chars,
                "MAX_STEP_OUTPUT_CHARS",
            )
        outputs.append(output)
        done.append({"name": name, "action": step["action"], **_kept(output)})
        await ctx.note(
            f"Step {index + 1} done: {name}", {"step": index + 1, "output": output[:2000]}
        )
    return {"steps": done, "final": outputs[-1], **engine_fields(ctx)}


def _parameters(custom_config: Any) -> str:
    # The config was size-capped when the task was created (task_configs.py).
    if custom_config is None or isinstance(custom_config, str):
        return custom_config or ""
    return json.dumps(custom_config, ensure_ascii=False, sort_keys=True)


async def _ask(ctx: AgentContext, prompt: str, parameters: str, *, max_tokens: int) -> str:
    """A model call for one step; the task's custom_config, if any, leads the prompt."""
    if parameters:
        prompt = f"Task parameters (custom_config):\n{parameters}\n\n{prompt}"
    return await ask_model(ctx, SYSTEM_PROMPT, prompt, max_tokens=max_tokens)


def _kept(output: str) -> dict[str, Any]:
    if len(output) <= STEP_OUTPUT_KEPT:
        return {"output": output}
    return {"output": output[:STEP_OUTPUT_KEPT], "truncated": True, "output_chars": len(output)}


async def _run_step(
    ctx: AgentContext, step: dict[str, Any], outputs: list[str], taken: _Substituted
) -> str:
    action = step["action"]
    instruction = _fill(step.get("instruction") or "", outputs, taken)
    given = step.get("input")
    if given is not None:
        text = _fill(given, outputs, taken)
    else:
        text = taken.take(outputs[-1] if outputs else "")
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
            prompt = f"Summarise in at most {words} words:\n\n{text}"
            return await _ask(ctx, prompt, taken.custom_config, max_tokens=words * 2 + 50)
        return await asyncio.to_thread(summarize, text, words)
    if action == "extract":
        if ctx.llm is not None:
            what = instruction or "the key facts"
            prompt = f"Extract {what} from:\n\n{text}"
            return await _ask(ctx, prompt, taken.custom_config, max_tokens=STEP_TOKENS)
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
            prompt = f"Write about: {topic}\n\nContext:\n{text}"
            return await _ask(ctx, prompt, taken.custom_config, max_tokens=STEP_TOKENS)
        written = await asyncio.to_thread(draft, topic, "article", 300, "informative", [])
        return written.content
    return await _prompt(ctx, instruction, text, taken.custom_config)


async def _prompt(ctx: AgentContext, instruction: str, text: str, parameters: str) -> str:
    if ctx.llm is not None:
        prompt = f"{instruction}\n\n{text}".strip()
        return await _ask(ctx, prompt, parameters, max_tokens=STEP_TOKENS)
    # No model: say so, and do the honest part an extractive engine can do.
    if not text:
        return f"[offline engine: no language model is configured to carry out: {instruction}]"
    found = await asyncio.to_thread(relevant_passages, instruction, [Document("input", text)], 3)
    passages = "\n".join(f"- {p.text}" for p in found) or "- (nothing in the input matches)"
    note = "[offline engine: no language model; passages of the input relevant to the step]"
    return f"{note}\n{passages}"


def _fill(template: str, outputs: list[str], taken: _Substituted) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(1) == "previous":
            return taken.take(outputs[-1] if outputs else "")
        if match.group(1) == "custom_config":
            return taken.take(taken.custom_config)
        number = int(match.group(2))
        if not 1 <= number <= len(outputs):
            raise AgentError(
                "invalid_input", f"{{{{steps.{number}}}}} refers to a step not yet run"
            )
        return taken.take(outputs[number - 1])

    # re.sub joins the pieces only after the last replacement: a cap raised inside `replace`
    # stops the chain before the oversized text exists.
    return STEP_REFERENCE.sub(replace, template)


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
