"""The report's number tables: what is shown, how it is formatted, what is left to the JSON."""

from __future__ import annotations

import re

from dtlens.report.tables import MAX_ITEMS, format_value, numbers_html


def _rows(page: str) -> dict[str, str]:
    return dict(re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", page))


def test_format_value():
    assert format_value(0.123456) == "0.1235"
    assert format_value(-1234567.0) == "-1.235e+06"
    assert format_value(3) == "3"
    assert format_value(False) == "no"
    assert format_value(None) == "—"
    assert format_value("S9") == "S9"


def test_scalars_lists_and_small_dicts_become_rows():
    rows = _rows(
        numbers_html(
            {
                "rtg": 0.9,
                "tokens": ["S5", "S9"],
                "empty": [],
                "diff": {"key": 1.5, "ball": -2.0},
                "entropy": {"on": {"RTG 0": 1.0, "RTG 0.9": 0.25}, "off": [1, 2]},
            }
        )
    )
    assert rows == {
        "rtg": "0.9",
        "tokens": "S5, S9",
        "empty": "(none)",
        "diff": "key = 1.5; ball = -2",
        "entropy": "on = (RTG 0 1, RTG 0.9 0.25); off = 1, 2",
    }


def test_big_or_deep_values_are_left_to_the_json():
    numbers = {
        "grid": {f"L0H{i}": float(i) for i in range(20)},
        "long": list(range(MAX_ITEMS + 1)),
        "deep": {"a": {"b": {"c": 1}}},
        "kept": 1,
    }
    assert _rows(numbers_html(numbers)) == {"kept": "1"}
    assert numbers_html({"grid": numbers["grid"]}) == ""


def test_records_become_a_table():
    page = numbers_html(
        {"runs": [{"layout": "key/top-key", "reward": 0.892}, {"layout": "a", "extra": True}]}
    )
    assert "<caption>runs</caption>" in page
    assert re.findall(r"<th>(.*?)</th>", page) == ["layout", "reward", "extra"]
    cells = re.findall(r"<td>(.*?)</td>", page)
    assert cells == ["key/top-key", "0.892", "", "a", "", "yes"]


def test_text_is_escaped():
    page = numbers_html({"<b>": "<script>alert(1)</script>"})
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;" in page
