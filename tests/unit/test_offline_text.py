"""The sentence splitter and word counter the offline engine scores and counts with."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agenttasks.workers.offline.text import sentences, truncate_words, word_count, words

REPORT = """# Quarterly review

Revenue grew 12% in Q3, e.g. in the U.S. market, to $4.5 million. Dr. Smith said \
"It was our strongest quarter." Costs fell too!
The board met at 5 p.m. on Friday... Then it adjourned. Margins rose (by 3.5 points). \
See fig. 2 for the regional split, as J. R. Hartley noted.

Key points
- Revenue up 12%
- Margins improved across all three regions of the business this year
1. Hire two engineers.
2. Review the pricing of the
   enterprise plan before renewal season.
"""


def test_sentences_split_at_full_stops_but_not_at_abbreviations_decimals_or_initials() -> None:
    assert sentences(REPORT)[1:9] == [
        "Revenue grew 12% in Q3, e.g. in the U.S. market, to $4.5 million.",
        'Dr. Smith said "It was our strongest quarter."',
        "Costs fell too!",
        "The board met at 5 p.m. on Friday...",
        "Then it adjourned.",
        "Margins rose (by 3.5 points).",
        "See fig. 2 for the regional split, as J. R. Hartley noted.",
        "Key points",
    ]


def test_headings_and_bullets_stand_alone_and_wrapped_lines_are_joined() -> None:
    found = sentences(REPORT)
    assert found[0] == "Quarterly review"
    assert found[-4:] == [
        "Revenue up 12%",
        "Margins improved across all three regions of the business this year",
        "Hire two engineers.",
        "Review the pricing of the enterprise plan before renewal season.",
    ]


def test_hard_wrapped_prose_is_not_cut_at_line_ends() -> None:
    text = (
        "Offshore wind farms produce more power per turbine because the wind at sea\n"
        "is steadier and stronger than on land. They cost more to build and to\n"
        "maintain, since every repair needs a boat or a helicopter.\n"
    )
    assert sentences(text) == [
        "Offshore wind farms produce more power per turbine because the wind at sea is "
        "steadier and stronger than on land.",
        "They cost more to build and to maintain, since every repair needs a boat or a helicopter.",
    ]


def test_a_short_line_without_punctuation_is_a_title_not_the_start_of_a_sentence() -> None:
    assert sentences("Solar costs\nModule prices fell by ninety percent in a decade.") == [
        "Solar costs",
        "Module prices fell by ninety percent in a decade.",
    ]


def test_empty_and_blank_text_has_no_sentences() -> None:
    assert sentences("") == []
    assert sentences(" \n\n\t \n") == []


def test_words_keep_contractions_and_hyphenated_words_whole() -> None:
    assert words("Don't over-think it: 3.5% of a/b \u2014 isn\u2019t much.") == [
        "Don't",
        "over-think",
        "it",
        "3",
        "5",
        "of",
        "a",
        "b",
        "isn\u2019t",
        "much",
    ]
    assert word_count("  ") == 0


def test_truncate_words_cuts_at_a_word_and_marks_the_cut() -> None:
    assert truncate_words("One two, three four five.", 2) == "One two \u2026"
    assert truncate_words("One two three.", 3) == "One two three."
    assert truncate_words("One two three.", 0) == ""


@given(st.text(), st.integers(min_value=0, max_value=40))
def test_truncate_words_never_keeps_more_words_than_the_limit(text: str, limit: int) -> None:
    cut = truncate_words(text, limit)
    assert word_count(cut) <= limit
    assert word_count(cut) == min(limit, word_count(text))


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=400))
def test_sentences_lose_no_word_of_plain_prose(text: str) -> None:
    # A list marker ("1." or "a)") opening a line is layout, not a word; every other word stays.
    plain = text.replace("#", " ").replace("*", " ").replace("-", " ").replace("\u2022", " ")
    kept = word_count(" ".join(sentences(plain)))
    assert word_count(plain) - len(plain.splitlines()) <= kept <= word_count(plain)
