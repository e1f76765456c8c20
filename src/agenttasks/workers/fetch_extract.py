"""The readable text of a downloaded page: trafilatura for HTML, plain text as it is.

`extract` runs in a child process (extract_pool) under a deadline; what it does itself stays
linear in the page's size, so no page is slow here by construction.
"""

from __future__ import annotations

import contextlib
import html
import re
from configparser import ConfigParser
from dataclasses import dataclass
from functools import cache

TITLE_SCAN_CHARS = 100_000  # a <title> sits in the head: the fallback reads no further
_TITLE_OPEN = re.compile("<title", re.IGNORECASE)
_TITLE_CLOSE = re.compile("</title", re.IGNORECASE)


@dataclass(frozen=True)
class Download:
    url: str
    body: bytes
    content_type: str
    charset: str | None


def extract(download: Download) -> tuple[str, str]:
    """(title, main text) of a downloaded page; blocking (trafilatura), so run in a thread."""
    import trafilatura  # ~0.5 s to import: only workers that fetch pay for it

    document = _decoded(download)
    if download.content_type == "text/plain":
        text = _as_text(document).strip()
        return (text[:1000].splitlines()[0][:200] if text else ""), text
    extracted = trafilatura.bare_extraction(
        document,
        url=download.url,
        include_comments=False,  # its default, True, pulls comment spam in
        with_metadata=True,
        config=extraction_config(),
    )
    text = (getattr(extracted, "text", None) or "").strip()
    title = (getattr(extracted, "title", None) or "").strip() or _html_title(_as_text(document))
    return title, text


def _decoded(download: Download) -> str | bytes:
    """The page as text when its charset is stated; else bytes, for trafilatura to detect."""
    if download.charset:
        with contextlib.suppress(LookupError):  # an unknown charset name: let it detect
            return download.body.decode(download.charset, errors="replace")
    return download.body


def _as_text(document: str | bytes) -> str:
    return document if isinstance(document, str) else document.decode("utf-8", errors="replace")


def _html_title(page: str) -> str:
    # Literal searches, each started where the last one ended: linear. The regex this replaces,
    # `<title[^>]*>(.*?)</title>`, rescanned the page from every `<title` (56 KB took 6.7 s).
    head = page[:TITLE_SCAN_CHARS]
    opening = _TITLE_OPEN.search(head)
    if opening is None:
        return ""
    start = head.find(">", opening.end())
    closing = _TITLE_CLOSE.search(head, start + 1) if start >= 0 else None
    if closing is None:
        return ""
    return " ".join(html.unescape(head[start + 1 : closing.start()]).split())[:200]


@cache
def extraction_config() -> ConfigParser:
    """trafilatura's settings, lowered for short pages (NOTES: else it returns boilerplate)."""
    from trafilatura.settings import use_config

    config = use_config()
    config.set("DEFAULT", "MIN_EXTRACTED_SIZE", "50")
    config.set("DEFAULT", "MIN_OUTPUT_SIZE", "10")
    config.set("DEFAULT", "EXTRACTION_TIMEOUT", "0")  # its signal-based timeout breaks in threads
    return config
