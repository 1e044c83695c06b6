"""Write the analysis of a run: analysis.json, CSV tables, Table 3 as Markdown.

NaN (an undefined rate) is written as ``null`` in JSON and as an empty cell in CSV/Markdown.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from netgrow.train.metrics import write_json_atomic


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Strict JSON (NaN -> null), written atomically."""
    return write_json_atomic(path, obj)


def _cell(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return ""
    if isinstance(v, (list, tuple)):
        return ";".join(str(_cell(x)) for x in v)
    return "" if v is None else v


def write_csv(path: str | os.PathLike[str], header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    path = Path(path)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for row in rows:
            w.writerow([_cell(v) for v in row])
    return path


def _pct(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{100 * v:.2f}"


def table3_markdown(rows: Sequence[Mapping[str, Any]], title: str, notes: Sequence[str] = ()) -> str:
    """Table 3 analogue: adversarial accuracy (%) vs ε, grown w/ MI (vote, defer, soft), w/o MI, scratch baseline."""
    has_base = any(r.get("baseline") is not None for r in rows)
    head = ["ε", "grown (w/ MI, vote)", "grown (w/ MI, defer)", "grown (w/ MI, soft)", "grown (w/o MI)"]
    head += ["scratch baseline"] if has_base else []
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"{r['eps']:g}", _pct(r.get("mi")), _pct(r.get("mi_defer")), _pct(r.get("mi_soft")),
                 _pct(r.get("final"))]
        if has_base:
            cells.append(_pct(r.get("baseline")))
        lines.append("| " + " | ".join(cells) + " |")
    if notes:
        lines.append("")
        lines.extend(notes)
    return "\n".join(lines) + "\n"
