"""Sentences and words: the units the offline engine scores and counts."""

from __future__ import annotations

import re

# Words that end in a full stop without ending the sentence ("e.g. The", "Dr. Smith").
_ABBREVIATED = (
    "e.g i.e etc vs mr mrs ms dr prof inc ltd co corp jr sr st no nos fig figs approx u.s u.k "
    "dept est cf al ph.d a.m p.m jan feb mar apr jun jul aug sep sept oct nov dec vol pp ca "
    "gen col lt sgt rev gov sen rep mt ave blvd"
)
_ABBREVIATIONS = frozenset(_ABBREVIATED.split())
_CLOSERS = "\"')]\u201d\u2019\u00bb"
_OPENERS = "\"'([\u201c\u2018\u00ab"
# A sentence ends at . ! ? or an ellipsis (and any closing quotes or brackets), followed by
# space and something that can start a sentence.
_BOUNDARY = re.compile(
    rf"(?<=[.!?\u2026])([{re.escape(_CLOSERS)}]*)\s+(?=[{re.escape(_OPENERS)}]?[A-Z0-9])"
)
_BULLET = re.compile(r"^\s*(?:[-*+\u2022\u2023\u25e6]|\d{1,3}[.)]|[a-z][.)])\s+")
_HEADING = re.compile(r"^\s*#{1,6}\s+")
_TERMINAL = re.compile(rf"[.!?:;\u2026][{re.escape(_CLOSERS)}]*$")
_WORD = re.compile(r"[\w]+(?:['\u2019-][\w]+)*")
# A line this short that does not end in punctuation is a title or heading, not wrapped prose.
_HEADING_WORDS = 8


def sentences(text: str) -> list[str]:
    """The sentences of `text`, in order, whitespace normalised; headings and bullets apart."""
    found: list[str] = []
    for block in _blocks(text):
        start = 0
        for match in _BOUNDARY.finditer(block):
            candidate = block[start : match.end(1)].strip()
            if _ends_in_abbreviation(candidate):
                continue
            found.append(candidate)
            start = match.end()
        tail = block[start:].strip()
        if tail:
            found.append(tail)
    return found


def _blocks(text: str) -> list[str]:
    """Runs of lines that belong together: paragraphs, single bullets, single headings.

    A single newline inside a paragraph is usually hard wrapping and does not end a sentence,
    but a bullet, a Markdown heading or a short unpunctuated line (a title) stands alone.
    """
    blocks: list[str] = []
    current: list[str] = []
    listed = False  # the open block is a list item: only a lower-case line continues it

    def close() -> None:
        if current:
            blocks.append(" ".join(" ".join(current).split()))
            current.clear()

    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            close()
        elif _HEADING.match(line):
            close()
            blocks.append(_HEADING.sub("", line))
        elif _BULLET.match(line):
            close()
            current.append(_BULLET.sub("", line))
            listed = True
        else:
            starts_upper = not line[0].islower()
            if current and starts_upper and (listed or _is_title(current)):
                close()
            if not current:
                listed = False
            current.append(line)
    close()
    return [" ".join(block.split()) for block in blocks if block.strip()]


def _is_title(lines: list[str]) -> bool:
    return len(lines) == 1 and is_heading(lines[0])


def is_heading(line: str) -> bool:
    """A short line that does not end in punctuation: a title or heading, not a sentence."""
    return len(line.split()) <= _HEADING_WORDS and not _TERMINAL.search(line)


def _ends_in_abbreviation(candidate: str) -> bool:
    last = candidate.rsplit(None, 1)[-1].strip(_OPENERS + _CLOSERS)
    if not last.endswith("."):
        return False  # ended by ! ? or an ellipsis
    bare = last.rstrip(".").lower()
    # A single letter is an initial ("J. Smith"), except a lone digit ("in step 3. Then").
    return bare in _ABBREVIATIONS or (len(bare) == 1 and bare.isalpha())


def words(text: str) -> list[str]:
    """The words of `text`: letters and digits, with inner apostrophes and hyphens."""
    return _WORD.findall(text)


def word_count(text: str) -> int:
    """How many words `text` has (what max_length and length count)."""
    return len(words(text))


def truncate_words(text: str, limit: int) -> str:
    """The first `limit` words of `text` (as `words` counts them), with an ellipsis when cut."""
    if limit <= 0:
        return ""
    for index, match in enumerate(_WORD.finditer(text)):
        if index == limit:
            kept = text[: match.start()].rstrip().rstrip(",;:-\u2013\u2014(").rstrip()
            return f"{kept} \u2026"
    return text
