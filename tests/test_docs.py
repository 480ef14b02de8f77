"""The documents tell the truth about the tree: README.md stays a front door, every link, section pointer and
file named in README.md and docs/ resolves, and no paragraph or table row stands in two places."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import ROOT

DOCUMENTS = [ROOT / "README.md", ROOT / "results" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
# A file of the repository named in backticks: a path with a folder and a suffix (outputs under results/<name>/
# are made by the commands, not shipped, so only the committed reference run's are checked).
NAMED_FILE = re.compile(r"`((?:[\w.-]+/)+[\w.-]+\.(?:py|md|yaml|sh|html|png|json|csv))`")


def anchors(markdown: str) -> set[str]:
    """GitHub's ids of a Markdown file's headings: lower case, punctuation dropped, spaces as dashes."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", strip_code(markdown), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def strip_code(markdown: str) -> str:
    return re.sub(r"^```.*?^```", "", markdown, flags=re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_link_and_section_pointer_resolves(document: Path) -> None:
    text = strip_code(document.read_text())
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        assert linked.exists(), f"{document.name}: link to {target}: no such file"
        if anchor:
            assert anchor in anchors(linked.read_text()), f"{document.name}: link to {target}: no such section"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_file_the_documents_name_is_there(document: Path) -> None:
    for name in NAMED_FILE.findall(document.read_text()):
        if name.startswith("results/") and not name.startswith("results/reference/"):
            continue
        assert (ROOT / name).exists() or (document.parent / name).exists(), f"{document.name} names {name}: not there"


def test_readme_is_a_front_door() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 120
    first_screen = "\n".join(text.splitlines()[:40])  # the set-up command and the test command, on the first screen
    assert "pip install torch==2.13.0 && pip install -e . && python hpo/search.py" in first_screen
    assert "python -m pytest -q" in first_screen


def test_no_paragraph_or_table_row_stands_in_two_places() -> None:
    """Prose paragraphs and table rows of every document, compared whole (whitespace aside): each says its fact
    in one place and the others link to it."""
    seen: Counter[str] = Counter()
    for document in DOCUMENTS:
        blocks = re.split(r"\n\s*\n", strip_code(document.read_text()))
        rows = [line for line in strip_code(document.read_text()).splitlines()
                if line.startswith("|") and not set(line) <= set("|-: ")]
        for piece in [*blocks, *rows]:
            normal = " ".join(piece.split())
            if len(normal) >= 80 and not normal.startswith("|") or normal.startswith("|") and len(normal) >= 40:
                seen[normal] += 1
    repeated = [piece[:100] for piece, count in seen.items() if count > 1]
    assert not repeated, repeated
