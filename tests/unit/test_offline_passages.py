"""Research without a model: passages that match a question, key findings, honest answers."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agenttasks.workers.offline.passages import (
    MAX_PASSAGE_WORDS,
    Document,
    Passage,
    answer_from_passages,
    key_findings,
    relevant_passages,
)
from agenttasks.workers.offline.text import word_count

SOLAR = Document(
    "https://example.org/solar",
    """Solar power

Solar photovoltaic modules turn sunlight directly into electricity. Between 2010 and 2020 the \
price of solar modules fell by about ninety percent, driven by cheaper polysilicon and larger \
factories in China. Utility-scale solar is now the cheapest source of new electricity in most \
countries.

Solar output follows the sun, so it peaks at midday and stops at night. Batteries and grid \
interconnections smooth that daily rhythm. Rooftop panels let households produce part of their \
own electricity.

Cookie settings: we use cookies to improve your experience on this site.""",
)
WIND = Document(
    "https://example.org/wind",
    """Wind power

A wind turbine's rotor turns a generator housed in the nacelle at the top of the tower. Offshore \
wind farms are built at sea because the winds there are steadier and stronger than on land, so \
each turbine produces more electricity. Offshore turbines cost more to build and maintain, since \
every repair needs a boat.

Onshore wind is among the cheapest sources of electricity, but local opposition often delays \
new projects. Wind and solar complement each other: winds tend to be stronger in winter, when \
solar output is low.

Cookie settings: we use cookies to improve your experience on this site.""",
)


def test_the_best_passage_answers_the_question_from_the_right_source() -> None:
    found = relevant_passages("How much did the price of solar modules fall?", [WIND, SOLAR])
    assert found[0].source == SOLAR.source
    assert "ninety percent" in found[0].text
    assert [p.score for p in found] == sorted((p.score for p in found), reverse=True)


def test_stemming_matches_other_forms_of_the_question_words() -> None:
    found = relevant_passages("Why are offshore turbines built at sea?", [SOLAR, WIND], limit=1)
    assert found[0].source == WIND.source
    assert "steadier and stronger" in found[0].text


def test_no_passage_is_returned_when_nothing_in_the_sources_matches() -> None:
    assert relevant_passages("Who won the football match yesterday?", [SOLAR, WIND]) == []
    assert relevant_passages("", [SOLAR, WIND]) == []
    assert relevant_passages("What is solar power?", []) == []


def test_passages_respect_the_limit_and_never_quote_a_sentence_twice() -> None:
    found = relevant_passages("solar electricity wind", [SOLAR, WIND], limit=4)
    assert len(found) == 4
    sentences_quoted = [s for p in found for s in p.text.split(". ")]
    assert len(sentences_quoted) == len(set(sentences_quoted))


def test_a_page_without_punctuation_still_gives_short_passages() -> None:
    wall = Document("https://example.org/wall", " ".join(["solar panel output"] * 2000))
    found = relevant_passages("solar panel output", [wall])
    assert found
    assert all(word_count(p.text) <= MAX_PASSAGE_WORDS for p in found)


def test_key_findings_are_central_sentences_without_boilerplate_or_repeats() -> None:
    findings = key_findings([SOLAR, WIND], limit=5)
    assert len(findings) == 5
    assert not any("cookies" in f for f in findings)
    assert not any(f in {"Solar power", "Wind power"} for f in findings)  # headings
    assert len(set(findings)) == 5
    text = SOLAR.text + WIND.text
    assert all(" ".join(f.split()) in " ".join(text.split()) for f in findings)


def test_key_findings_of_nothing_are_empty() -> None:
    assert key_findings([]) == []
    assert key_findings([Document("content", "Too short.")]) == []
    assert key_findings([SOLAR], limit=0) == []


def test_an_answer_quotes_the_passages_and_numbers_sources_in_order_of_appearance() -> None:
    passages = [
        Passage(WIND.source, "Winds at sea are steadier.", 2.0),
        Passage(SOLAR.source, "Solar peaks at midday.", 1.5),
        Passage(WIND.source, "Repairs need a boat.", 1.0),
    ]
    answer = answer_from_passages("Why offshore?", passages)
    assert "no language model" in answer
    assert "\u201cWinds at sea are steadier.\u201d [1]" in answer
    assert "\u201cSolar peaks at midday.\u201d [2]" in answer
    assert "\u201cRepairs need a boat.\u201d [1]" in answer


def test_an_answer_without_passages_says_plainly_that_the_sources_do_not_answer() -> None:
    answer = answer_from_passages("Who won the match?", [])
    assert "No passage in the sources matches" in answer
    assert "\u201c" not in answer


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=80), st.integers(min_value=0, max_value=6))
def test_any_question_gives_at_most_limit_passages_quoted_from_the_sources(
    question: str, limit: int
) -> None:
    found = relevant_passages(question, [SOLAR, WIND], limit=limit)
    assert len(found) <= limit
    texts = {d.source: " ".join(d.text.split()) for d in (SOLAR, WIND)}
    for passage in found:
        assert passage.score > 0
        assert passage.text in texts[passage.source]
