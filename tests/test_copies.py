"""No block of code stands twice in the runtime (docs/architecture/conventions.md, "One convention each").

The workplace's ``duplicates`` tool finds copies by shape for a person to look at; CI cannot rely on
it being installed, so this test keeps the plain rule that it checks most often: a run of
``MIN_LINES`` significant lines (blank lines, comments, imports and lone closing brackets left out,
indentation ignored) that stands, letter for letter, in two places of ``service/``, ``schemas/``,
``deployments/`` or ``loadtests/`` is a copy that one function should serve. Families that repeat a
shape with their own names (the op declarations of each ``spec.py``) are not caught, by design.

No service, no torch: a fraction of a second.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ("service", "schemas", "deployments", "loadtests")
MIN_LINES = 10


def _significant(text: str) -> list[tuple[int, str]]:
    """(line number, stripped line) of the lines that carry code."""
    kept = []
    for number, line in enumerate(text.splitlines(), 1):
        code = line.strip()
        if not code or code.startswith("#") or code.startswith(("import ", "from ")) or code in {")", "]", "}", "),", "],", "},"}:
            continue
        kept.append((number, code))
    return kept


def copies(sources: dict[str, str], min_lines: int = MIN_LINES) -> list[tuple[str, str]]:
    """Each pair of places ``"path:line"`` whose next ``min_lines`` significant lines are the same, the first of a run only."""
    places: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for path, text in sources.items():
        lines = _significant(text)
        for start in range(len(lines) - min_lines + 1):
            window = tuple(code for _, code in lines[start : start + min_lines])
            places[window].append(f"{path}:{lines[start][0]}")
    found, previous = [], set()
    for where in places.values():
        if len(where) < 2:
            continue
        pair = (where[0], where[1])
        # a longer copy shows as consecutive windows: report where it starts
        key = tuple(place.rsplit(":", 1)[0] for place in pair)
        lines = tuple(int(place.rsplit(":", 1)[1]) for place in pair)
        if not any(key == k and all(0 < a - b <= min_lines for a, b in zip(lines, ls)) for k, ls in previous):
            found.append(pair)
        previous.add((key, lines))
    return found


def test_no_block_of_runtime_code_stands_twice():
    sources = {p.relative_to(ROOT).as_posix(): p.read_text() for d in CHECKED for p in sorted((ROOT / d).rglob("*.py"))}
    assert len(sources) > 50, "the checked folders were read"
    found = copies(sources)
    assert not found, f"{len(found)} blocks of {MIN_LINES}+ lines stand twice (one function should serve both):\n" + "\n".join(
        f"  {a} ~ {b}" for a, b in found
    )


def test_the_check_finds_a_copy_and_passes_over_what_is_not_code():
    body = "\n".join(f"    total = total + {i}" for i in range(MIN_LINES))
    first = f"import os\n\ndef a(total):\n{body}\n    return total\n"
    second = f"# the same, elsewhere\nfrom os import path\n\n\nclass B:\n  def b(self, total):\n{body}\n\n        return total\n"
    assert copies({"one.py": first, "two.py": second}) == [("one.py:4", "two.py:7")], "one copy, reported once, where it starts"
    shorter = "\n".join(f"    total = total + {i}" for i in range(MIN_LINES - 1))
    assert copies({"one.py": first, "three.py": f"def c(total):\n{shorter}\n    return 0\n"}) == []
    spaced = "\n".join(f"    total = total + {i}\n\n    # why\n    )" for i in range(MIN_LINES))
    assert copies({"one.py": first, "four.py": f"def d(total):\n{spaced}\n"}), "blank lines, comments and brackets do not hide a copy"
