"""Research without a model: the passages of the sources most relevant to a question."""

from __future__ import annotations

from dataclasses import dataclass

from agenttasks.workers.offline.scoring import central_terms, scores
from agenttasks.workers.offline.text import sentences, word_count

WINDOW = 2  # sentences per passage: one sentence often lacks its context


@dataclass(frozen=True)
class Document:
    source: str  # a URL, or "content" for text given with the task
    text: str


@dataclass(frozen=True)
class Passage:
    source: str
    text: str
    score: float


def _passages(documents: list[Document]) -> list[tuple[str, str]]:
    units: list[tuple[str, str]] = []
    for document in documents:
        found = sentences(document.text)
        for start in range(0, len(found), WINDOW):
            units.append((document.source, " ".join(found[start : start + WINDOW])))
    return units


def relevant_passages(question: str, documents: list[Document], limit: int = 3) -> list[Passage]:
    """The passages that match the question best (BM25), best first; [] when none matches."""
    units = _passages(documents)
    ranked = scores([text for _, text in units], question)
    best = sorted(range(len(units)), key=lambda i: -ranked[i])[:limit]
    return [Passage(units[i][0], units[i][1], round(ranked[i], 4)) for i in best if ranked[i] > 0]


def key_findings(documents: list[Document], limit: int = 5) -> list[str]:
    """The sentences most central to all the sources together, in order of centrality."""
    candidates = [s for d in documents for s in sentences(d.text) if 6 <= word_count(s) <= 60]
    if not candidates:
        return []
    query = central_terms(" ".join(d.text for d in documents))
    ranked = scores(candidates, query)
    order = sorted(range(len(candidates)), key=lambda i: -ranked[i])
    findings: list[str] = []
    for index in order:
        if candidates[index] not in findings:
            findings.append(candidates[index])
        if len(findings) == limit:
            break
    return findings


def answer_from_passages(question: str, passages: list[Passage]) -> str:
    """An extractive answer: the matching passages quoted with their sources, or a plain no."""
    if not passages:
        return "The sources do not contain an answer to this question."
    quoted = " ".join(f"\u201c{p.text}\u201d [{n}]" for n, p in enumerate(passages, 1))
    return f"From the sources (extractive, no language model): {quoted}"
