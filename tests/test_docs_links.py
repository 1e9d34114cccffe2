"""Every relative link and image in README.md and docs/**/*.md names a file that exists, and every
`#fragment` into a Markdown page names one of its headings.

Reads the Markdown files only (no service, no network). External links (http:, https:, mailto:)
are skipped; links inside code blocks and code spans are not links and are skipped too. Heading
anchors follow GitHub's rule: lower case, punctuation dropped, spaces turned into hyphens, a
repeated heading numbered -1, -2, ...

The pages also name tests (the promise tables of security.md and conformance.md): every code span
`tests/<file>.py::<test>` names a test function of that file, and a bare `::<test>` one of the file
named last before it on the page.
"""

import ast
import re
import unicodedata
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([REPO_ROOT / "README.md", *(REPO_ROOT / "docs").rglob("*.md")])

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def without_code(text: str) -> str:
    return CODE_SPAN.sub("", FENCE.sub("", text))


def relative_links(page: Path) -> list[str]:
    targets = [match.group(1) for match in LINK.finditer(without_code(page.read_text()))]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def slug(heading: str) -> str:
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LMN")
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def test_the_slug_rule():
    assert slug("Bring your own checkpoint") == "bring-your-own-checkpoint"
    assert slug("Data path of a synchronous edit (`POST /v1/edits`)") == "data-path-of-a-synchronous-edit-post-v1edits"
    assert slug("7. Limits of these promises") == "7-limits-of-these-promises"


def test_there_are_pages_to_check():
    assert len(PAGES) > 1 and all(page.is_file() for page in PAGES)


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO_ROOT)) for p in PAGES])
def test_every_relative_link_resolves(page: Path):
    problems = []
    for target in relative_links(page):
        path, _, fragment = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            problems.append(f"{target}: no such file")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            problems.append(f"{target}: no heading with that anchor")
    assert not problems, f"{page.relative_to(REPO_ROOT)}: {problems}"


TEST_REFERENCE = re.compile(r"`(?:(?:tests/)?(test_\w+\.py))?(?:::(\w+))?`")


def _test_functions(file: str) -> set[str]:
    path = REPO_ROOT / "tests" / file
    if not path.is_file():
        return set()
    return {node.name for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO_ROOT)) for p in PAGES])
def test_every_test_a_page_names_exists(page: Path):
    problems, last_file = [], None
    for match in TEST_REFERENCE.finditer(FENCE.sub("", page.read_text())):
        file, name = match.groups()
        if file:
            last_file = file
            if not (REPO_ROOT / "tests" / file).is_file():
                problems.append(f"tests/{file}: no such file")
        if name and (last_file is None or name not in _test_functions(last_file)):
            problems.append(f"{last_file}::{name}: no such test")
    assert not problems, f"{page.relative_to(REPO_ROOT)}: {problems}"
