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


def test_scalars_and_lists_become_rows_nested_dicts_become_text():
    rows = _rows(
        numbers_html(
            {
                "rtg": 0.9,
                "tokens": ["S5", "S9"],
                "empty": [],
                "entropy": {"on": {"RTG 0": 1.0, "RTG 0.9": 0.25}, "off": [1, 2]},
            }
        )
    )
    assert rows == {
        "rtg": "0.9",
        "tokens": "S5, S9",
        "empty": "(none)",
        "entropy": "on = (RTG 0 1, RTG 0.9 0.25); off = 1, 2",
    }


def _inner(page: str, key: str) -> str:
    [table] = re.findall(
        rf"<tr><th>{key}</th><td>(<table class='inner'>.*?</table>)</td></tr>", page
    )
    return table


def test_a_dict_of_scalars_is_a_one_row_table_not_a_raw_dict():
    page = numbers_html({"diff": {"key": 1.5, "ball": -2.0, "tokens": ["S5", "S9"]}})
    table = _inner(page, "diff")
    assert re.findall(r"<th>(.*?)</th>", table) == ["key", "ball", "tokens"]
    assert re.findall(r"<td>(.*?)</td>", table) == ["1.5", "-2", "S5, S9"]
    assert "{" not in page and " = " not in page


def test_a_dict_of_dicts_is_a_matrix():
    page = numbers_html(
        {"heads": {"q": {"L0H0": 0.123456, "L0H1": True}, "v": {"L0H1": 1.0, "L1H0": None}}}
    )
    table = _inner(page, "heads")
    head, *rows = re.findall(r"<tr>(.*?)</tr>", table)
    assert re.findall(r"<th>(.*?)</th>", head) == ["", "L0H0", "L0H1", "L1H0"]
    cells = [re.findall(r"<t[hd]>(.*?)</t[hd]>", row) for row in rows]
    assert cells == [["q", "0.1235", "yes", ""], ["v", "", "1", "—"]]


def test_too_wide_matrices_fall_back_to_text_or_the_json():
    wide = {"a": {f"c{i}": 1.0 for i in range(7)}, "b": {f"c{i + 7}": 1.0 for i in range(7)}}
    page = numbers_html({"wide": wide})
    assert "<table class='inner'>" not in page  # 14 columns: written out instead
    assert _rows(page)["wide"].startswith("a = (c0 1, c1 1")


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
