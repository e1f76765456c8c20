"""The readable text of a downloaded page: trafilatura for HTML, plain text as it is."""

from __future__ import annotations

import contextlib
import html
import re
from configparser import ConfigParser
from dataclasses import dataclass
from functools import cache


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
        return (text.splitlines()[0][:200] if text else ""), text
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
    found = re.search(r"<title[^>]*>(.*?)</title\s*>", page, re.IGNORECASE | re.DOTALL)
    return " ".join(html.unescape(found.group(1)).split())[:200] if found else ""


@cache
def extraction_config() -> ConfigParser:
    """trafilatura's settings, lowered for short pages (NOTES: else it returns boilerplate)."""
    from trafilatura.settings import use_config

    config = use_config()
    config.set("DEFAULT", "MIN_EXTRACTED_SIZE", "50")
    config.set("DEFAULT", "MIN_OUTPUT_SIZE", "10")
    config.set("DEFAULT", "EXTRACTION_TIMEOUT", "0")  # its signal-based timeout breaks in threads
    return config
