"""Sentence scoring: how well a sentence matches a question, and how central it is to a text.

Matching is BM25 (the bm25s library), where a rare word of the question counts for more.
Centrality is the opposite: a sentence is central when it is made of the words the whole text
uses most (Luhn's and SumBasic's measure), so a digression or a footer ranks low. Words are
stemmed (PyStemmer's English Snowball stemmer) so that "rates" matches "rate", and stop words
are bm25s's longer English list. bm25s is imported on first use: it pulls in numpy and costs a
fifth of a second, which a worker that never runs offline should not pay.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from functools import cache
from typing import Any

# bm25s's own token pattern, so that query stems and indexed stems are made alike.
_TOKEN = re.compile(r"(?u)\b\w\w+\b")


@cache
def _stemmer() -> Any:
    import Stemmer  # PyStemmer: C Snowball stemmers, no data to download

    return Stemmer.Stemmer("english")


@cache
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN_PLUS

    return frozenset(STOPWORDS_EN_PLUS)


def content_words(text: str) -> list[str]:
    """The stems of `text`'s words that carry meaning (no stop words, numbers or tiny words)."""
    stop = _stopwords()
    kept = [
        w for w in _TOKEN.findall(text.lower()) if w not in stop and len(w) > 2 and not w.isdigit()
    ]
    return list(_stemmer().stemWords(kept))


def centrality(units: list[str], text: str) -> list[float]:
    """How central each unit (sentence) is to `text`: the summed share of `text`'s content words
    of each distinct stem in it, over the square root of its length (long is not central)."""
    counts = Counter(content_words(text))
    total = sum(counts.values()) or 1
    result = []
    for unit in units:
        stems = content_words(unit)
        weight = sum(counts[s] for s in set(stems)) / total
        result.append(weight / math.sqrt(len(stems)) if stems else 0.0)
    return result


def scores(units: list[str], query: str | list[str]) -> list[float]:
    """BM25 score of each unit (sentence or passage) for `query`; zeros when nothing matches.

    `query` is either text, or stems from `content_words`.
    """
    stems = content_words(query) if isinstance(query, str) else query
    if not units or not stems:
        return [0.0] * len(units)
    import bm25s

    corpus = bm25s.tokenize(
        units, stopwords=list(_stopwords()), stemmer=_stemmer().stemWords, show_progress=False
    )
    retriever = bm25s.BM25()
    retriever.index(corpus, show_progress=False)
    known = [s for s in stems if s in corpus.vocab]
    if not known:
        return [0.0] * len(units)
    return [float(value) for value in retriever.get_scores(known)]


def similarity(a: set[str], b: set[str]) -> float:
    """Jaccard similarity of two sets of stems: 1.0 for near-copies, 0.0 for nothing shared."""
    union = a | b
    return len(a & b) / len(union) if union else 1.0
