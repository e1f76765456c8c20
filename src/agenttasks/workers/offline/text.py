"""Sentences and words: the units the offline engine scores and counts."""

from __future__ import annotations

import re

# A sentence ends at . ! ? (and closing quotes/brackets) followed by space and an upper-case
# letter, digit or quote; or at a blank line / bullet. Common abbreviations do not end one.
_ABBREVIATIONS = {
    "e.g",
    "i.e",
    "etc",
    "vs",
    "mr",
    "mrs",
    "ms",
    "dr",
    "prof",
    "inc",
    "ltd",
    "jr",
    "sr",
    "st",
    "no",
    "fig",
    "approx",
    "u.s",
    "u.k",
    "dept",
    "est",
    "cf",
    "al",
}
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_BLOCKS = re.compile(r"\n\s*\n|\n\s*(?:[-*\u2022]|\d+[.)])\s+")
_BULLET = re.compile(r"^(?:[-*\u2022]|\d+[.)])\s+")
_WORD = re.compile(r"\b[\w'-]+\b")


def sentences(text: str) -> list[str]:
    """The sentences of `text`, in order, whitespace normalised."""
    found: list[str] = []
    for block in _BLOCKS.split(text):
        block = _BULLET.sub("", " ".join(block.split()))
        if not block:
            continue
        start = 0
        for match in _BOUNDARY.finditer(block):
            candidate = block[start : match.start()].strip()
            last_word = candidate.rsplit(" ", 1)[-1].rstrip(".").lower()
            if last_word in _ABBREVIATIONS or len(last_word) == 1:
                continue  # "e.g. The", "J. Smith": not the end of a sentence
            found.append(candidate)
            start = match.end()
        tail = block[start:].strip()
        if tail:
            found.append(tail)
    return found


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def word_count(text: str) -> int:
    """How many words `text` has (what max_length and length count)."""
    return len(words(text))


def truncate_words(text: str, limit: int) -> str:
    """The first `limit` words of `text`, ending with an ellipsis when cut."""
    parts = text.split()
    if len(parts) <= limit:
        return text
    return " ".join(parts[:limit]).rstrip(",;:") + " …"
