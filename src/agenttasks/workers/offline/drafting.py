"""Content generation without a model: an outline a writer fills in, not pretend prose.

The outline fits the content type (a blog post has a hook and takeaways, an email a greeting
and a call to action), weaves the keywords into the section prompts, and grows to roughly the
requested length with one prompt per point to make.
"""

from __future__ import annotations

from dataclasses import dataclass

SECTIONS: dict[str, list[str]] = {
    "blog_post": ["Hook", "Why {topic} matters", "Key points", "Practical tips", "Takeaways"],
    "article": ["Introduction", "Background", "Main discussion", "Implications", "Conclusion"],
    "report": ["Summary", "Scope and method", "Findings", "Analysis", "Recommendations"],
    "social_post": ["Opening line", "Message", "Call to action"],
    "email": ["Greeting", "Purpose", "Details", "Call to action", "Sign-off"],
    "newsletter": ["Headline", "This issue", "Featured story", "Quick updates", "What's next"],
    "product_description": [
        "Headline",
        "What it is",
        "Features",
        "Who it is for",
        "Call to action",
    ],
}
POINTS = [
    "State the main claim about {topic} in one sentence.",
    "Give a concrete example or figure that supports it.",
    "Explain what it means for the reader.",
    "Address the most likely objection.",
    "Connect it to the next section.",
]
TONE_NOTES = {
    "professional": "clear and precise",
    "casual": "relaxed, conversational",
    "friendly": "warm and encouraging",
    "formal": "formal, third person",
    "persuasive": "confident, benefit-led",
    "informative": "neutral and factual",
}


@dataclass(frozen=True)
class Draft:
    title: str
    content: str
    keywords_used: list[str]


def draft(topic: str, content_type: str, length: int, tone: str, keywords: list[str]) -> Draft:
    """A Markdown outline of about `length` words for a piece on `topic`."""
    title = f"{topic.strip().rstrip('.')}: a {content_type.replace('_', ' ')} outline"
    sections = SECTIONS.get(content_type, SECTIONS["article"])
    lines = [
        f"# {title}",
        "",
        f"> Draft outline by the offline engine (no language model is configured). "
        f"Tone: {TONE_NOTES.get(tone, tone)}. Target length: about {length} words.",
        "",
    ]
    pending = list(keywords)
    # One bullet is about 14 words: enough bullets per section to reach the length.
    per_section = max(2, min(40, round(length / 14 / len(sections))))
    point = 0
    for section in sections:
        lines += [f"## {section.format(topic=topic)}", ""]
        for turn in range(per_section):
            prompt = POINTS[point % len(POINTS)].format(topic=topic)
            if turn >= len(POINTS):
                prompt = f"Point {turn + 1}: {prompt[0].lower()}{prompt[1:]}"
            if pending:
                prompt += f" Work in **{pending.pop(0)}**."
            lines.append(f"- {prompt}")
            point += 1
        lines.append("")
    content = "\n".join(lines).rstrip() + "\n"
    used = [k for k in keywords if k.lower() in content.lower()]
    return Draft(title=title, content=content, keywords_used=used)
