"""The shapes of the pieces the offline engine outlines: sections and what goes in each.

Every prompt tells the writer what to put there; none pretends to be the text itself.
`{topic}` is replaced by the piece's topic.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    heading: str
    prompts: tuple[str, ...]
    weight: int = 2  # share of the word budget
    body: bool = False  # body sections take the keywords and, for long pieces, sub-points


OUTLINES: dict[str, list[Section]] = {
    "blog_post": [
        Section(
            "Hook",
            (
                "Open with a question, a surprising figure or a short story about {topic}.",
                "Say in one sentence what the reader will get from this post.",
            ),
            1,
        ),
        Section(
            "Why {topic} matters",
            (
                "Name the problem or opportunity the reader has.",
                "Give one concrete example or statistic, with its source.",
            ),
            body=True,
        ),
        Section(
            "Key points",
            (
                "List the two or three ideas the post stands on.",
                "Back each with an example, a quote or a number.",
            ),
            4,
            body=True,
        ),
        Section(
            "Practical tips",
            (
                "Give steps the reader can take this week.",
                "Mention a common mistake and how to avoid it.",
            ),
            3,
            body=True,
        ),
        Section(
            "Takeaways",
            (
                "Restate the main idea in one line.",
                "End with a question or a call to comment, share or subscribe.",
            ),
            1,
        ),
    ],
    "article": [
        Section(
            "Introduction",
            (
                "Set the scene: why {topic} is worth reading about now.",
                "State the article's main claim or question.",
            ),
            1,
        ),
        Section(
            "Background",
            (
                "Explain the context and define the terms a newcomer needs.",
                "Summarise what is already known, with sources.",
            ),
            body=True,
        ),
        Section(
            "Main discussion",
            (
                "Develop the central argument about {topic} step by step.",
                "Support each step with evidence: data, studies, interviews.",
            ),
            4,
            body=True,
        ),
        Section(
            "Implications",
            ("Who is affected, and how?", "Give the strongest counter-argument and answer it."),
            2,
            body=True,
        ),
        Section(
            "Conclusion",
            ("Draw the threads together in a few sentences.", "Point to what to watch next."),
            1,
        ),
    ],
    "report": [
        Section(
            "Executive summary",
            ("State the purpose, the main findings and the key recommendation in a few lines.",),
            1,
        ),
        Section(
            "Scope and method",
            (
                "Say what was examined about {topic}, over which period.",
                "Describe the sources and methods, and their limits.",
            ),
            1,
        ),
        Section(
            "Findings",
            (
                "Present each finding with the figure or evidence behind it.",
                "Use a table or chart where numbers are compared.",
            ),
            4,
            body=True,
        ),
        Section(
            "Analysis",
            (
                "Explain causes and trends behind the findings.",
                "Note uncertainty and what the data cannot show.",
            ),
            3,
            body=True,
        ),
        Section(
            "Recommendations",
            ("List actions in priority order, each with an owner and a time frame.",),
            1,
        ),
    ],
    "social_post": [
        Section("Opening line", ("One line about {topic} that stops the scroll.",), 1),
        Section(
            "Message",
            (
                "The one point to get across, in plain words.",
                "A concrete detail: a number, a result or a picture to attach.",
            ),
            2,
            body=True,
        ),
        Section("Call to action", ("What the reader should do next, and a link or hashtag.",), 1),
    ],
    "email": [
        Section("Subject line", ("A specific subject line about {topic}, under ten words.",), 1),
        Section("Greeting", ("Address the reader by name.",), 1),
        Section("Purpose", ("Say in the first sentence why you are writing.",), 1, body=True),
        Section(
            "Details",
            (
                "Give the facts the reader needs: dates, figures, decisions.",
                "Keep each point to one short paragraph or bullet.",
            ),
            3,
            body=True,
        ),
        Section("Call to action", ("Ask for one specific thing, with a deadline.",), 1),
        Section("Sign-off", ("Close and sign with your name and role.",), 1),
    ],
    "newsletter": [
        Section("Headline", ("A headline that names the issue's biggest news on {topic}.",), 1),
        Section("In this issue", ("List the stories below in one line each.",), 1),
        Section(
            "Featured story",
            (
                "Tell the main story: what happened, why it matters, what comes next.",
                "Add a quote or a figure.",
            ),
            4,
            body=True,
        ),
        Section("Quick updates", ("Three or four short items, each with a link.",), 2, body=True),
        Section(
            "What's next",
            ("Dates, events or releases to watch for.", "Invite replies and feedback."),
            1,
        ),
    ],
    "product_description": [
        Section("Headline", ("Name the product and its main benefit in one line.",), 1),
        Section(
            "What it is",
            ("Describe {topic} in plain words: what it does and for whom.",),
            2,
            body=True,
        ),
        Section(
            "Features and benefits",
            (
                "Turn each feature into the benefit a buyer gets.",
                "Give specifics: sizes, materials, figures.",
            ),
            3,
            body=True,
        ),
        Section("Who it is for", ("Describe the buyer and the problem it solves for them.",), 1),
        Section("Call to action", ("Price, availability and how to buy.",), 1),
    ],
}

# Sub-points for long pieces: an angle on the topic, then what a writer needs to make it stand.
ANGLES = (
    "a case or example that shows {topic} at work",
    "the evidence: figures, studies or data on {topic}",
    "a comparison of {topic} with the alternative",
    "the most common objection, and the answer to it",
    "a practical step the reader can take",
    "a cost, risk or limit of {topic}",
    "what practitioners or users say",
    "what is likely to change next",
)
POINT_PROMPTS = (
    "State the claim in one sentence.",
    "Support it with an example, a figure or a source.",
    "Say what it means for the reader.",
)

TONES = {
    "professional": "clear, precise, no slang",
    "casual": "relaxed and conversational, short sentences",
    "friendly": "warm and encouraging, second person",
    "formal": "formal, third person, no contractions",
    "persuasive": "confident, benefit-led, ends each section with a reason to act",
    "informative": "neutral and factual, sources named",
}
