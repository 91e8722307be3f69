"""Render report sections into one self-contained HTML page (plotly.js inlined once).

Examples:
    >>> page = render_html([section], title="dtlens report")  # doctest: +SKIP
    >>> "<script" in page  # doctest: +SKIP
    True
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence

from plotly.offline import get_plotlyjs

from dtlens.report.section import Section

__all__ = ["render_html"]

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222;
       line-height: 1.5; padding: 0 1em; }
h1 { margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
.meta { color: #555; }
.seed { background: #f6f6f6; border-left: 4px solid #999; padding: 0.5em 1em; }
.model { background: #eef5ff; border-left: 4px solid #3b7dd8; padding: 0.5em 1em; }
details pre { background: #fafafa; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.figure { margin: 1em 0; }
"""


def render_html(sections: Sequence[Section], title: str, intro: str = "") -> str:
    """One HTML page: title, intro, a table of contents, then each section.

    Each section shows its figures, "What the seed saw", "What this model shows" and
    its numbers (collapsed JSON). Text is HTML-escaped; plotly.js is embedded once so
    the page needs no network.
    """
    toc = "".join(
        f'<li><a href="#{html.escape(s.key)}">{html.escape(s.title)}</a></li>' for s in sections
    )
    body = "".join(_render_section(section) for section in sections)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        f"<h1>{html.escape(title)}</h1><p class='meta'>{html.escape(intro)}</p>"
        f"<h2>Contents</h2><ol>{toc}</ol>{body}</body></html>\n"
    )


def _render_section(section: Section) -> str:
    figures = "".join(
        "<div class='figure'>"
        + figure.to_html(
            full_html=False, include_plotlyjs=False, div_id=f"{section.key}-fig-{index}"
        )
        + "</div>"
        for index, figure in enumerate(section.figures)
    )
    numbers = html.escape(json.dumps(section.to_json()["numbers"], indent=2))
    return (
        f"<section id='{html.escape(section.key)}'><h2>{html.escape(section.title)}</h2>"
        f"{figures}"
        f"<p class='seed'><b>What the seed saw.</b> {html.escape(section.seed_saw)}</p>"
        f"<p class='model'><b>What this model shows.</b> {html.escape(section.this_model)}</p>"
        f"<details><summary>Numbers</summary><pre>{numbers}</pre></details></section>"
    )
