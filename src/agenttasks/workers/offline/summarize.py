"""Extractive summaries: the text's most central sentences, in their original order."""

from __future__ import annotations

from agenttasks.workers.offline.scoring import centrality, content_words, similarity
from agenttasks.workers.offline.text import sentences, truncate_words, word_count

MAX_SENTENCES_SCORED = 5_000  # beyond this, later sentences are not considered (speed)
MIN_WORDS = 4  # shorter "sentences" are headings and fragments: they summarise nothing
LEAD_BONUS = 1.2  # the first sentence often states the point, as in news writing
SAME_SENTENCE = 0.7  # stem overlap (Jaccard) from which a sentence repeats a chosen one


def summarize(text: str, max_words: int) -> str:
    """At most `max_words` words of `text`'s own sentences, chosen by centrality, in order."""
    return " ".join(summary_sentences(text, max_words))


def summary_sentences(text: str, max_words: int) -> list[str]:
    """The sentences `summarize` joins: each one of `text`'s (the last maybe cut short)."""
    found = sentences(text)[:MAX_SENTENCES_SCORED]
    if max_words <= 0 or not found:
        return []
    sizes = [word_count(s) for s in found]
    if sum(sizes) <= max_words:
        return found
    ranked = centrality(found, text)
    ranked[0] *= LEAD_BONUS
    order = sorted(range(len(found)), key=lambda i: (-ranked[i], i))
    chosen: list[int] = []
    said: list[set[str]] = []
    used = 0
    for index in order:
        if sizes[index] < MIN_WORDS or used + sizes[index] > max_words or ranked[index] <= 0:
            continue
        stems = set(content_words(found[index]))
        if any(similarity(stems, other) >= SAME_SENTENCE for other in said):
            continue  # a near-repeat (a page footer on every page) is said once
        chosen.append(index)
        said.append(stems)
        used += sizes[index]
        if used >= max_words * 0.9:
            break
    if not chosen:
        # Even the best sentence is longer than the limit: cut it cleanly at a word.
        best = next((i for i in order if sizes[i] >= MIN_WORDS), order[0])
        return [truncate_words(found[best], max_words)]
    return [found[i] for i in sorted(chosen)]
