"""The README is the front door: short, and every link in it lands. The docs site itself is
checked by `mkdocs build --strict` in `make lint` (pages, nav, links and anchors)."""

from __future__ import annotations

import re
from pathlib import Path

from markdown.extensions.toc import slugify

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$", re.MULTILINE)


def anchors(page: Path) -> set[str]:
    """The ids MkDocs gives the page's headings (its `toc` extension's default slugify)."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    return {slugify(re.sub(r"[`*]", "", title), "-") for title in HEADING.findall(text)}


def test_readme_is_at_most_250_lines():
    assert len(README.read_text().splitlines()) <= 250


def test_readme_links_point_at_files_and_headings_that_exist():
    links = [link for link in LINK.findall(README.read_text()) if "://" not in link]
    assert links, "the README links to the docs"
    for link in links:
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.exists(), f"README links to {path}, which does not exist"
        if anchor:
            assert anchor in anchors(target), f"README links to {link}: no such heading"


def test_slugs_match_mkdocs():
    """The anchor rule above is MkDocs' for a heading with code and an apostrophe."""
    assert slugify("The LitServe peer's settings", "-") == "the-litserve-peers-settings"
    assert slugify("Serving: POST /classify", "-") == "serving-post-classify"
