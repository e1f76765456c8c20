"""Content generation without a model: an outline a writer fills in, not pretend prose.

The outline fits the content type (a blog post has a hook and takeaways, an email a greeting
and a call to action), gives each section a word budget, and puts a prompt for the writer under
each heading: what to say there, never the saying of it. Keywords are spread over the sections.
Longer pieces get numbered sub-points in the body sections until the outline is about as long
as the piece asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

from agenttasks.workers.offline.outlines import ANGLES, OUTLINES, POINT_PROMPTS, TONES, Section
from agenttasks.workers.offline.text import word_count

MAX_SUBPOINTS = 1_000  # a 20,000-word outline needs about 700


@dataclass(frozen=True)
class Draft:
    title: str
    content: str
    keywords_used: list[str]


def draft(topic: str, content_type: str, length: int, tone: str, keywords: list[str]) -> Draft:
    """A Markdown outline of about `length` words for a piece on `topic`."""
    topic = " ".join(topic.split()).rstrip(".") or "Untitled"
    kind = content_type.replace("_", " ")
    title = f"{topic}: {_article(kind)} {kind} outline"
    sections = OUTLINES.get(content_type, OUTLINES["article"])
    keywords = list(dict.fromkeys(k.strip() for k in keywords if k.strip()))
    head = [
        f"# {title}",
        "",
        "> Outline from the offline engine: no language model is configured, so this is a plan "
        "for a writer to fill in, not finished text.",
        f"> Tone: {tone} ({TONES.get(tone, 'as the brief asks')}). "
        f"Target: about {length} words in all.",
        "",
    ]
    bodies = [_section(s, topic, _budget(s, sections, length)) for s in sections]
    _place_keywords(bodies, sections, keywords)
    missing = length - word_count("\n".join(head + _flatten(bodies)))
    _grow(bodies, sections, topic, length, missing)
    content = "\n".join(head + _flatten(bodies)).rstrip() + "\n"
    used = [k for k in keywords if k.casefold() in content.casefold()]
    return Draft(title=title, content=content, keywords_used=used)


def _article(kind: str) -> str:
    return "an" if kind[:1] in "aeiou" else "a"


def _budget(section: Section, sections: list[Section], length: int) -> int:
    total = sum(s.weight for s in sections)
    return max(5, round(length * section.weight / total))


def _section(section: Section, topic: str, budget: int) -> list[str]:
    heading = section.heading.format(topic=topic)
    lines = [f"## {heading}", "", f"*About {budget} words.*", ""]
    lines += [f"- {prompt.format(topic=topic)}" for prompt in section.prompts]
    return lines


def _place_keywords(bodies: list[list[str]], sections: list[Section], keywords: list[str]) -> None:
    # Spread the keywords over the body sections (round robin), each on its own bullet line.
    targets = [i for i, s in enumerate(sections) if s.body] or list(range(len(sections)))
    for n, keyword in enumerate(keywords):
        bodies[targets[n % len(targets)]].append(f"- Work in the keyword **{keyword}** here.")


def _grow(
    bodies: list[list[str]], sections: list[Section], topic: str, length: int, missing: int
) -> None:
    # Sub-points go to the body section furthest below its share of the length, until the
    # outline is about as long as the piece asked for.
    targets = [i for i, s in enumerate(sections) if s.body] or [len(sections) // 2]
    budgets = {i: _budget(sections[i], sections, length) for i in targets}
    sizes = {i: word_count("\n".join(bodies[i])) for i in targets}
    counts = dict.fromkeys(targets, 0)
    for added in range(MAX_SUBPOINTS):
        if missing <= 0:
            break
        index = max(targets, key=lambda i: (budgets[i] - sizes[i], -i))
        counts[index] += 1
        angle = ANGLES[added % len(ANGLES)].format(topic=topic)
        lines = [f"- Point {counts[index]}: {angle}."]
        lines += [f"  - {prompt}" for prompt in POINT_PROMPTS]
        bodies[index] += lines
        size = word_count("\n".join(lines))
        sizes[index] += size
        missing -= size


def _flatten(bodies: list[list[str]]) -> list[str]:
    return [line for body in bodies for line in [*body, ""]]
