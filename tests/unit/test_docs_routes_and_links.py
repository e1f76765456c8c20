"""The docs a new engineer meets stay true: every link of README.md and docs/*.md resolves, and
docs/api.md's "Every route" index names every path of the OpenAPI document."""

from __future__ import annotations

import re
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from agenttasks.api.app import create_app
from agenttasks.api.deps import ApiConfig

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)\s]+)\)")
PARAMETER = re.compile(r"\{[^}]*\}")
PREFIX = "/api/v1/utils"


def slugs(markdown: str) -> set[str]:
    """GitHub's heading anchors, outside code fences."""
    found: set[str] = set()
    fenced = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            found.add(re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-"))
    return found


def broken_links(document: Path) -> list[str]:
    broken = []
    for target in LINK.findall(document.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        linked = (document.parent / path) if path else document
        missing_anchor = (
            linked.exists()
            and bool(anchor)
            and linked.suffix == ".md"
            and anchor not in slugs(linked.read_text())
        )
        if not linked.exists() or missing_anchor:
            broken.append(f"{document.name}: {target}")
    return broken


def test_every_link_of_the_readme_and_the_docs_resolves() -> None:
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert [link for document in documents for link in broken_links(document)] == []


def test_a_link_to_a_missing_heading_is_caught(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("## Every route\n\n```\n# not a heading\n```\n")
    (tmp_path / "b.md").write_text(
        "[ok](a.md#every-route) [gone](a.md#no-such) [fenced](a.md#not-a-heading) [x](c.md)"
    )
    assert broken_links(tmp_path / "b.md") == [
        "b.md: a.md#no-such",
        "b.md: a.md#not-a-heading",
        "b.md: c.md",
    ]


def openapi_paths() -> set[str]:
    def no_deps() -> AbstractAsyncContextManager[Any]:
        raise AssertionError("the schema needs no collaborators")

    app = create_app(ApiConfig(jwt_secret="x" * 32), no_deps)
    return set(app.openapi_schema.to_schema()["paths"])


def normalised(path: str) -> str:
    """`/api/v1/utils/ai-tasks/{task_id}` -> `/ai-tasks/{}/`: how the index writes it."""
    path = PARAMETER.sub("{}", path.removeprefix(PREFIX))
    return path if path.endswith("/") or path in ("/health", "/ready") else path + "/"


def route_index() -> str:
    manual = (ROOT / "docs" / "api.md").read_text()
    start = manual.index("\n## Every route\n")
    return PARAMETER.sub("{}", manual[start : manual.index("\n## ", start + 1)])


def test_the_api_route_index_names_every_path_of_the_openapi_document() -> None:
    index = route_index()
    paths = openapi_paths()
    assert len(paths) > 20  # the document really was built
    missing = sorted(path for path in paths if f"{normalised(path)}`" not in index)
    assert missing == []
