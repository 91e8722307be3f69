"""Render a report section's numbers as readable HTML tables (the headline values).

A section's ``numbers`` is free-form JSON. The page shows what fits a table at a
glance and leaves the rest to the collapsed full JSON below it:

- scalars and short lists of scalars become rows of a "key | value" table;
- a small dict of scalars becomes a small table in its row (its keys over its values),
  and a dict of such dicts a small matrix (one row per outer key, one column per inner
  key), so no value is shown as a raw dict; other small nested dicts are written out
  as ``key = value`` text;
- a list of dicts (one record per run or layout) becomes its own table, one row per
  record, one column per key.

Big tables (per-head grids of a large model, per-token lists) are left out; they
are in the figures and the JSON.

Examples:
    >>> page = numbers_html({"rtg": 0.9, "solved": {"key": True, "ball": False}})
    >>> "<td>0.9</td>" in page and "<th>key</th><th>ball</th>" in page
    True
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["MAX_ITEMS", "format_value", "numbers_html"]

#: The most entries a list or dict may have to be shown inline (and rows of a record table).
MAX_ITEMS = 30
_MAX_DICT = 12


def format_value(value: Any) -> str:
    """A scalar as short text: floats to 4 significant digits, booleans as yes/no.

    Examples:
        >>> format_value(0.123456), format_value(True), format_value(None), format_value(12)
        ('0.1235', 'yes', '—', '12')
    """
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _inline(value: Any, depth: int = 0) -> str | None:
    """Short text for a scalar, a short list of scalars or a small dict; None if too big."""
    if _scalar(value):
        return format_value(value)
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) <= MAX_ITEMS and all(_scalar(v) for v in value):
            return ", ".join(format_value(v) for v in value) if value else "(none)"
        return None
    if isinstance(value, Mapping) and depth == 0 and len(value) <= _MAX_DICT:
        parts = [(k, _inline(v, depth + 1)) for k, v in value.items()]
        if all(text is not None for _, text in parts):
            return "; ".join(f"{k} = {text}" for k, text in parts)
    small = isinstance(value, Mapping) and len(value) <= _MAX_DICT
    if small and depth == 1 and all(_scalar(v) for v in value.values()):
        return "(" + ", ".join(f"{k} {format_value(v)}" for k, v in value.items()) + ")"
    return None


def _records(value: Any) -> bool:
    return (
        isinstance(value, list)
        and 0 < len(value) <= MAX_ITEMS
        and all(isinstance(v, Mapping) for v in value)
    )


def _record_table(name: str, rows: list[Mapping[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = ""
    for row in rows:
        cells = []
        for c in columns:
            text = _inline(row[c], depth=1) if c in row else ""
            cells.append(f"<td>{html.escape(text if text is not None else '…')}</td>")
        body += f"<tr>{''.join(cells)}</tr>"
    return (
        f"<table class='numbers records'><caption>{html.escape(name)}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def _is_row_dict(value: Any) -> bool:
    """A small dict of scalars (or short lists of them): one row of an inner table."""
    return (
        isinstance(value, Mapping)
        and 0 < len(value) <= _MAX_DICT
        and all(_scalar(v) or (_inline(v, depth=1) is not None and not isinstance(v, Mapping))
                for v in value.values())
    )  # fmt: skip


def _inner_table(value: Mapping[str, Any]) -> str | None:
    """A small dict of scalars as a one-row table, a dict of those as a matrix; else None."""
    if _is_row_dict(value):
        head = "".join(f"<th>{html.escape(str(k))}</th>" for k in value)
        cells = "".join(f"<td>{html.escape(_inline(v, 1) or '')}</td>" for v in value.values())
        return f"<table class='inner'><tr>{head}</tr><tr>{cells}</tr></table>"
    if not (isinstance(value, Mapping) and 0 < len(value) <= MAX_ITEMS):
        return None
    if not all(_is_row_dict(v) for v in value.values()):
        return None
    columns: list[str] = []
    for row in value.values():
        columns += [str(k) for k in row if str(k) not in columns]
    if len(columns) > _MAX_DICT:
        return None
    head = "<th></th>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = ""
    for name, row in value.items():
        texts = {str(k): _inline(v, 1) or "" for k, v in row.items()}
        cells = "".join(f"<td>{html.escape(texts.get(c, ''))}</td>" for c in columns)
        body += f"<tr><th>{html.escape(str(name))}</th>{cells}</tr>"
    return f"<table class='inner'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def numbers_html(numbers: Mapping[str, Any]) -> str:
    """HTML tables of a section's headline numbers ('' when nothing fits a table).

    Examples:
        >>> numbers_html({"runs": [{"layout": "key/top-key", "reward": 0.89}]}).count("<tr>")
        2
    """
    rows, tables = [], []
    for key, value in numbers.items():
        if _records(value):
            tables.append(_record_table(key, value))
            continue
        inner = _inner_table(value)
        if inner is not None:
            rows.append(f"<tr><th>{html.escape(key)}</th><td>{inner}</td></tr>")
            continue
        text = _inline(value)
        if text is not None:
            rows.append(f"<tr><th>{html.escape(key)}</th><td>{html.escape(text)}</td></tr>")
    out = f"<table class='numbers'><tbody>{''.join(rows)}</tbody></table>" if rows else ""
    return out + "".join(tables)
