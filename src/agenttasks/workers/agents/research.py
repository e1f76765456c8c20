"""research: read the sources, answer each question with citations to them."""

from __future__ import annotations

import asyncio
from typing import Any

from agenttasks.workers.agents.common import ask_model, engine_fields, read_sources
from agenttasks.workers.context import AgentContext
from agenttasks.workers.offline.passages import (
    Passage,
    answer_from_passages,
    key_findings,
    relevant_passages,
)

SYSTEM_PROMPT = (
    "You answer questions using only the numbered passages given. Cite passages as [n]. "
    "If the passages do not answer the question, say so plainly."
)
PASSAGES_PER_QUESTION = 4
ANSWER_TOKENS = 800  # max_tokens of one answer unless the task config asks for fewer


async def run(ctx: AgentContext) -> dict[str, Any]:
    config = ctx.config
    topic = config["topic"]
    questions = config.get("questions") or [f"What are the key points about {topic}?"]
    sources = await read_sources(
        ctx, config.get("content"), config.get("urls", []), start=5, end=40
    )
    answers = []
    for index, question in enumerate(questions):
        await ctx.progress(40 + 50 * index // len(questions), f"Answering: {question}")
        passages = await asyncio.to_thread(
            relevant_passages, question, sources.documents, PASSAGES_PER_QUESTION
        )
        if ctx.llm is not None and passages:
            prompt = _prompt(topic, question, passages)
            answer = await ask_model(ctx, SYSTEM_PROMPT, prompt, max_tokens=ANSWER_TOKENS)
        else:
            answer = await asyncio.to_thread(answer_from_passages, question, passages)
        cited = list(dict.fromkeys(p.source for p in passages))
        answers.append({"question": question, "answer": answer, "sources": cited})
        await ctx.note(f"Answered: {question}", {"answer": answers[-1]})
    await ctx.progress(92, "Collecting key findings")
    findings = await asyncio.to_thread(key_findings, sources.documents, 5)
    return {
        "topic": topic,
        "answers": answers,
        "key_findings": findings,
        "sources": sources.described,
        **engine_fields(ctx),
    }


def _prompt(topic: str, question: str, passages: list[Passage]) -> str:
    numbered = "\n".join(f"[{n}] ({p.source}) {p.text}" for n, p in enumerate(passages, 1))
    return f"Topic: {topic}\nQuestion: {question}\n\nPassages:\n{numbered}"
