"""What the CLI prints: aligned tables for people, JSON for scripts."""

from __future__ import annotations

import json
import sys
from typing import Any, Sequence, TextIO


def short_id(ident: str | None) -> str:
    return (ident or "")[:12]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]],
          out: TextIO | None = None) -> None:
    """Columns left-aligned and separated by at least two spaces; '-' for empty cells."""
    out = out or sys.stdout
    cells = [[str(h) for h in headers]] + [
        ["-" if c is None or c == "" else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        line = "  ".join(c.ljust(w) for c, w in zip(r, widths))
        out.write(line.rstrip() + "\n")


def as_json(value: Any, out: TextIO | None = None) -> None:
    (out or sys.stdout).write(json.dumps(value, indent=2) + "\n")


def lines(items: Sequence[str], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    for item in items:
        out.write(f"{item}\n")
