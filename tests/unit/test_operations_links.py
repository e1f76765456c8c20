"""docs/operations.md's links go somewhere: every linked document exists, and every #anchor is
a heading of that document (GitHub's slugs)."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slugs(markdown: str) -> set[str]:
    found = set()
    for heading in re.findall(r"(?m)^#{1,6} (.+)$", markdown):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_every_link_of_the_operators_manual_resolves() -> None:
    manual = (DOCS / "operations.md").read_text()
    broken = []
    for target in LINK.findall(manual):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        document = DOCS / path if path else DOCS / "operations.md"
        if not document.exists():
            broken.append(target)
            continue
        if anchor and document.suffix == ".md" and anchor not in slugs(document.read_text()):
            broken.append(target)
    assert broken == []


def test_a_missing_anchor_is_caught() -> None:
    assert "settings-reference" in slugs("## Settings reference\n")
    assert "nats-users-natsconf" in slugs("## NATS users (`nats.conf`)\n")
    assert "no-such-heading" not in slugs("## Settings reference\n")
