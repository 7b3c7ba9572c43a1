"""Rows as aligned text tables for the terminal (`gainrl sql`, `gainrl status`)."""

from __future__ import annotations

from numbers import Number

MAX_CELL_CHARS = 80


def _cell(value: object) -> str:
    text = "null" if value is None else format(value, ".6g") if isinstance(value, float) else str(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"


def format_table(columns: list[str], types: list[str] | None, rows: list[tuple]) -> str:
    """Rows as an aligned text table: names, types (when given), a rule, then the rows (numbers
    right-aligned, long values cut at MAX_CELL_CHARS)."""
    cells = [[_cell(v) for v in row] for row in rows]
    numeric = [any(isinstance(row[i], Number) and not isinstance(row[i], bool) for row in rows) for i in range(len(columns))]
    header = [columns] if types is None else [columns, types]
    widths = [max(len(text) for text in (*(h[i] for h in header), *(row[i] for row in cells))) for i in range(len(columns))]

    def line(values: list[str], right: list[bool]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)).rstrip()

    left = [False] * len(columns)
    return "\n".join([*(line(h, left) for h in header), line(["-" * w for w in widths], left), *(line(row, numeric) for row in cells)])
