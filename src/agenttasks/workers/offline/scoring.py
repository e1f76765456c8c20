"""Sentence scoring with BM25 (the bm25s library): how well a sentence matches a query.

For summaries and key findings the query is the text's own most frequent content words, so the
sentences scored highest are the ones most central to what the text is about.
"""

from __future__ import annotations

from collections import Counter

import bm25s
from bm25s.stopwords import STOPWORDS_EN

from agenttasks.workers.offline.text import words

_STOP = frozenset(STOPWORDS_EN)


def content_words(text: str) -> list[str]:
    return [
        w
        for w in (w.lower() for w in words(text))
        if w not in _STOP and len(w) > 2 and not w.isdigit()
    ]


def central_terms(text: str, limit: int = 20) -> str:
    """The text's most frequent content words, as a query."""
    return " ".join(w for w, _ in Counter(content_words(text)).most_common(limit))


def scores(units: list[str], query: str) -> list[float]:
    """BM25 score of each unit (sentence or passage) for `query`; zeros when nothing matches."""
    if not units or not query.strip():
        return [0.0] * len(units)
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(units, stopwords="en", show_progress=False), show_progress=False)
    tokens = bm25s.tokenize([query], stopwords="en", show_progress=False)
    if not any(tokens.ids):
        return [0.0] * len(units)
    found, values = retriever.retrieve(tokens, k=len(units), show_progress=False)
    result = [0.0] * len(units)
    for index, value in zip(found[0], values[0], strict=True):
        result[int(index)] = float(value)
    return result
