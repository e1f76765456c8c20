"""Content generation without a model: an honest Markdown outline fitted to the piece asked for."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agenttasks.workers.offline.drafting import draft
from agenttasks.workers.offline.outlines import OUTLINES
from agenttasks.workers.offline.text import word_count

TYPES = sorted(OUTLINES)


def headings(markdown: str) -> list[str]:
    return re.findall(r"^## (.+)$", markdown, flags=re.MULTILINE)


def test_a_blog_post_outline_has_a_title_the_blog_sections_and_says_it_is_an_outline() -> None:
    written = draft("Heat pumps for older houses", "blog_post", 400, "friendly", [])
    assert written.title == "Heat pumps for older houses: a blog post outline"
    assert written.content.startswith(f"# {written.title}\n")
    assert "no language model is configured" in written.content
    assert "Tone: friendly" in written.content
    assert headings(written.content) == [
        "Hook",
        "Why Heat pumps for older houses matters",
        "Key points",
        "Practical tips",
        "Takeaways",
    ]


def test_each_content_type_gets_headings_of_its_own() -> None:
    shapes = {
        kind: tuple(headings(draft("Tea", kind, 300, "casual", []).content)) for kind in TYPES
    }
    assert len(set(shapes.values())) == len(TYPES)
    assert "Call to action" in shapes["email"]
    assert "Subject line" in shapes["email"]
    assert "Recommendations" in shapes["report"]
    assert draft("Tea", "article", 300, "casual", []).title == "Tea: an article outline"


def test_every_keyword_is_woven_into_a_body_section_once() -> None:
    keywords = ["efficiency", "running cost", "grants"]
    written = draft("Heat pumps", "article", 500, "informative", keywords)
    assert written.keywords_used == keywords
    for keyword in keywords:
        assert written.content.count(f"**{keyword}**") == 1
    body = written.content.split("## Main discussion")[1].split("## Conclusion")[0]
    assert "**efficiency**" in body or "**running cost**" in body


def test_blank_and_repeated_keywords_are_dropped() -> None:
    written = draft("Heat pumps", "article", 300, "formal", ["grants", " ", "grants"])
    assert written.keywords_used == ["grants"]
    assert written.content.count("**grants**") == 1


@pytest.mark.parametrize("kind", TYPES)
@pytest.mark.parametrize("length", [300, 1000, 5000])
def test_the_outline_is_about_the_length_asked_for(kind: str, length: int) -> None:
    words = word_count(draft("Urban beekeeping", kind, length, "professional", ["hives"]).content)
    assert 0.9 * length <= words <= 1.2 * length


def test_a_tiny_length_still_gets_the_whole_skeleton_and_no_sub_points() -> None:
    written = draft("Tea", "social_post", 10, "casual", [])
    assert headings(written.content) == ["Opening line", "Message", "Call to action"]
    assert "Point 1" not in written.content
    assert word_count(written.content) < 150


def test_long_pieces_get_numbered_sub_points_with_prompts_not_prose() -> None:
    written = draft("Urban beekeeping", "report", 2000, "formal", [])
    assert "- Point 1: " in written.content
    assert "  - State the claim in one sentence." in written.content
    # Every line under a heading is a prompt (a bullet) or a word budget, never a paragraph.
    for line in written.content.splitlines():
        if line and not line.startswith(("#", ">")):
            assert line.lstrip().startswith(("- ", "*About ")), line


def test_an_unknown_content_type_falls_back_to_an_article_shape() -> None:
    written = draft("Tea", "haiku", 200, "serene", [])
    assert headings(written.content)[0] == "Introduction"
    assert "Tone: serene (as the brief asks)" in written.content


@settings(max_examples=60, deadline=None)
@given(
    st.text(min_size=1, max_size=80),
    st.sampled_from(TYPES),
    st.integers(min_value=10, max_value=3000),
    st.lists(st.text(min_size=1, max_size=20), max_size=8),
)
def test_any_request_gives_a_titled_outline_that_uses_every_keyword(
    topic: str, kind: str, length: int, keywords: list[str]
) -> None:
    written = draft(topic, kind, length, "casual", keywords)
    assert written.content.startswith("# ")
    wanted = [k.strip() for k in dict.fromkeys(k.strip() for k in keywords) if k.strip()]
    assert written.keywords_used == wanted
    assert word_count(written.content) <= max(length * 1.2, length + 200)
