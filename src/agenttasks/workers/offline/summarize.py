"""Extractive summaries: the text's most central sentences, in their original order."""

from __future__ import annotations

from agenttasks.workers.offline.scoring import central_terms, scores
from agenttasks.workers.offline.text import sentences, truncate_words, word_count

MAX_SENTENCES_SCORED = 5_000  # beyond this, later sentences are not considered (speed)


def summarize(text: str, max_words: int) -> str:
    """At most `max_words` words of `text`'s own sentences, chosen by centrality."""
    found = sentences(text)[:MAX_SENTENCES_SCORED]
    if not found:
        return ""
    if word_count(" ".join(found)) <= max_words:
        return " ".join(found)
    ranked = scores(found, central_terms(text))
    # The first sentence of a text often states its point: a small lead bonus, as news does.
    if ranked:
        ranked[0] *= 1.2
    # Prefer sentences of useful length: one-word fragments score high on nothing.
    order = sorted(range(len(found)), key=lambda i: (-ranked[i], i))
    chosen: list[int] = []
    used = 0
    for index in order:
        size = word_count(found[index])
        if size < 4:
            continue
        if used + size <= max_words:
            chosen.append(index)
            used += size
        if used >= max_words * 0.9:
            break
    if not chosen:  # even the best sentence is longer than the limit: cut it cleanly
        best = order[0]
        return truncate_words(found[best], max_words)
    return " ".join(found[i] for i in sorted(chosen))
