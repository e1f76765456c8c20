"""Extractive summaries: central sentences of the text itself, in order, within the word limit."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agenttasks.workers.offline.summarize import summarize, summary_sentences
from agenttasks.workers.offline.text import sentences, word_count

HEAT_PUMPS = """Heat pumps are replacing gas boilers in many European homes.

A heat pump moves heat from the outside air or the ground into a house, instead of burning \
fuel to make it. Because it moves heat rather than making it, a heat pump delivers three to \
four units of heat for every unit of electricity it uses. That efficiency is why heat pumps \
cut household energy bills when electricity prices are reasonable.

The upfront cost of a heat pump is higher than that of a gas boiler. Installation often needs \
larger radiators and better insulation, which adds to the cost. Several governments now pay \
grants that cover part of the cost of a heat pump installation.

My neighbour's cat likes to sleep on the warm outdoor unit in winter.

In cold climates, modern heat pumps still work well at minus twenty degrees. Norway, where \
winters are long and harsh, has more heat pumps per household than any other country. Sales \
of heat pumps in Europe grew by a third in 2022 as gas prices rose.

Subscribe to our newsletter for more articles like this one."""


def test_a_summary_keeps_the_central_sentences_and_drops_the_asides() -> None:
    for limit in (40, 60, 120):
        summary = summarize(HEAT_PUMPS, limit)
        assert word_count(summary) <= limit
        assert summary.startswith("Heat pumps are replacing gas boilers in many European homes.")
        assert "cat" not in summary
        assert "Subscribe" not in summary
    assert "three to four units of heat" in summarize(HEAT_PUMPS, 120)


def test_summary_sentences_come_from_the_text_in_their_original_order() -> None:
    found = sentences(HEAT_PUMPS)
    chosen = summary_sentences(HEAT_PUMPS, 80)
    positions = [found.index(s) for s in chosen]
    assert len(chosen) >= 2
    assert positions == sorted(positions)
    assert summarize(HEAT_PUMPS, 80) == " ".join(chosen)


def test_a_text_within_the_limit_is_returned_whole() -> None:
    text = "Heat pumps move heat.\nThey do not burn fuel."
    assert summarize(text, 50) == "Heat pumps move heat. They do not burn fuel."


def test_empty_text_or_no_words_allowed_gives_an_empty_summary() -> None:
    assert summarize("", 100) == ""
    assert summarize("   \n\n ", 100) == ""
    assert summarize(HEAT_PUMPS, 0) == ""


def test_a_sentence_longer_than_the_limit_is_cut_at_a_word_with_an_ellipsis() -> None:
    text = (
        "The committee, after three long days of hearings in which engineers, installers, "
        "economists and homeowners all gave evidence, concluded that heat pumps are ready."
    )
    summary = summarize(text, 10)
    assert summary == "The committee, after three long days of hearings in which \u2026"
    assert word_count(summary) == 10


def test_boilerplate_repeated_on_every_page_is_said_once() -> None:
    footer = "Heat pumps and heat pump grants are explained on our heat pump pages."
    pages = "\n\n".join(f"{footer}\n\n{HEAT_PUMPS}" for _ in range(3))
    summary = summarize(pages, 120)
    assert summary.count(footer) <= 1


PROSE = st.lists(
    st.sampled_from(
        [
            *sentences(HEAT_PUMPS),
            "Costs fell.",
            "Dr. Lee, e.g. in 2021, measured it at 3.5 kW.",
            "- A bullet without a full stop",
            "## A heading",
            "",
        ]
    ),
    max_size=40,
).map(lambda parts: "\n".join(parts))


@settings(max_examples=150, deadline=None)
@given(PROSE, st.integers(min_value=0, max_value=120))
def test_a_summary_never_exceeds_max_words_and_only_quotes_the_text(
    text: str, max_words: int
) -> None:
    chosen = summary_sentences(text, max_words)
    assert word_count(" ".join(chosen)) <= max_words
    originals = sentences(text)
    for sentence in chosen:
        cut = sentence.removesuffix(" \u2026")
        assert sentence in originals or any(o.startswith(cut) for o in originals)
