"""Research without a model: the passages of the sources most relevant to a question."""

from __future__ import annotations

from dataclasses import dataclass

from agenttasks.workers.offline.scoring import centrality, content_words, scores, similarity
from agenttasks.workers.offline.text import is_heading, sentences, truncate_words, word_count

WINDOW = 2  # sentences per passage: one sentence often lacks its context
MAX_PASSAGE_WORDS = 120  # a "sentence" of a page with no punctuation can be huge
FINDING_WORDS = (6, 60)  # a key finding is a real sentence, not a heading or a wall of text
WEAK_MATCH = 0.25  # a passage scoring under this share of the best one only shares a word or two
SAME_FINDING = 0.6  # stem overlap (Jaccard) from which a finding repeats an earlier one


@dataclass(frozen=True)
class Document:
    source: str  # a URL, or "content" for text given with the task
    text: str


@dataclass(frozen=True)
class Passage:
    source: str
    text: str
    score: float


@dataclass(frozen=True)
class _Window:
    document: int
    first: int  # index of its first sentence in its document
    last: int
    text: str


def _windows(documents: list[Document]) -> list[_Window]:
    # Overlapping windows (stride 1): a matching sentence is found with the one before it and
    # with the one after it, and the better-scoring context wins.
    units: list[_Window] = []
    for number, document in enumerate(documents):
        found = [s for s in sentences(document.text) if not is_heading(s)]
        for start in range(max(1, len(found) - WINDOW + 1)):
            chunk = found[start : start + WINDOW]
            if chunk:
                text = truncate_words(" ".join(chunk), MAX_PASSAGE_WORDS)
                units.append(_Window(number, start, start + len(chunk) - 1, text))
    return units


def relevant_passages(question: str, documents: list[Document], limit: int = 3) -> list[Passage]:
    """The passages that match the question best (BM25), best first; [] when none matches."""
    units = _windows(documents)
    ranked = scores([u.text for u in units], question)
    order = sorted(range(len(units)), key=lambda i: (-ranked[i], i))
    picked: list[_Window] = []
    result: list[Passage] = []
    floor = ranked[order[0]] * WEAK_MATCH if order else 0.0
    for index in order:
        unit = units[index]
        if ranked[index] <= 0 or ranked[index] < floor or len(result) >= limit:
            break
        if any(
            p.document == unit.document and p.first <= unit.last and unit.first <= p.last
            for p in picked
        ):
            continue  # overlaps a better passage: it would quote the same sentence twice
        picked.append(unit)
        result.append(Passage(documents[unit.document].source, unit.text, round(ranked[index], 4)))
    return result


def key_findings(documents: list[Document], limit: int = 5) -> list[str]:
    """The sentences most central to all the sources together, most central first."""
    low, high = FINDING_WORDS
    candidates = [
        s
        for d in documents
        for s in sentences(d.text)
        if low <= word_count(s) <= high and not is_heading(s)
    ]
    if not candidates or limit <= 0:
        return []
    ranked = centrality(candidates, "\n\n".join(d.text for d in documents))
    order = sorted(range(len(candidates)), key=lambda i: (-ranked[i], i))
    findings: list[str] = []
    kept: list[set[str]] = []
    for index in order:
        stems = set(content_words(candidates[index]))
        if ranked[index] <= 0 or any(similarity(stems, o) >= SAME_FINDING for o in kept):
            continue
        findings.append(candidates[index])
        kept.append(stems)
        if len(findings) == limit:
            break
    return findings


def answer_from_passages(question: str, passages: list[Passage]) -> str:
    """An extractive answer: the matching passages quoted with their sources, or a plain no.

    Citations number the sources in order of first appearance, as the research result lists
    them (`[1]` is the first distinct source).
    """
    if not passages:
        return (
            "No passage in the sources matches this question, so the offline engine "
            "(no language model) cannot answer it from them."
        )
    numbers: dict[str, int] = {}
    quoted = []
    for passage in passages:
        number = numbers.setdefault(passage.source, len(numbers) + 1)
        quoted.append(f"\u201c{passage.text}\u201d [{number}]")
    return "Passages from the sources that match the question (extractive, no language model): " + (
        " ".join(quoted)
    )
