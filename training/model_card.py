"""Pieces every demo checkpoint's model card (``checkpoints/<name>/README.md``) and the quality scripts' figure files share."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any


def hardware(threads: int) -> str:
    """What the run ran on, e.g. 'x86_64 CPU, 2 torch threads (Linux)'."""
    return f"{platform.machine()} CPU, {threads} torch threads ({platform.processor() or platform.system()})"


def arch_and_command(arch: dict[str, Any], command: str) -> str:
    """The card's '## Architecture' table (the manifest's arch) and '## How it was made' block."""
    rows = "\n".join(f"| `{key}` | {value} |" for key, value in arch.items())
    return f"""## Architecture (`arch` in model.json)

| field | value |
|---|---|
{rows}

## How it was made

```
{command}
```"""


def command_line(module: str, argv: list[str] | None, trained_with: str | None = None) -> str:
    """The command that ran ``module`` (``argv`` None: this process's arguments), after the command that
    trained its snapshot when it only exported one (``--trained-with``)."""
    import sys

    command = f"python -m {module} " + " ".join(argv if argv is not None else sys.argv[1:])
    return f"{trained_with}\n{command}" if trained_with else command


def write_figures(out: Path, command: str, results: list[dict[str, Any]], table: str) -> None:
    """A quality script's figures: ``out`` (JSON: the command and the results) and the markdown table beside it (.md)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": command, "results": results}, indent=2) + "\n")
    out.with_suffix(".md").write_text(table + "\n")
