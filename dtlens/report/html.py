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
from dtlens.report.tables import numbers_html

__all__ = ["render_html"]

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222;
       line-height: 1.5; padding: 0 1em; }
h1 { margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2.5em; }
.meta { color: #555; }
.toc li { margin: 0.15em 0; }
.explain { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; margin: 1em 0;
           align-items: start; }
@media (max-width: 800px) { .explain { grid-template-columns: 1fr; } }
.seed, .model { margin: 0; padding: 0.6em 1em; }
.seed { background: #f6f6f6; border-left: 4px solid #999; }
.model { background: #eef5ff; border-left: 4px solid #3b7dd8; }
table.numbers { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
table.numbers th, table.numbers td { border: 1px solid #ddd; padding: 0.25em 0.6em;
       text-align: left; vertical-align: top; }
table.numbers th { background: #fafafa; font-weight: 600; white-space: nowrap; }
table.numbers caption { text-align: left; font-weight: 600; padding: 0.3em 0; }
table.records td { font-variant-numeric: tabular-nums; }
table.records td:first-child { white-space: nowrap; }
details pre { background: #fafafa; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.figure { margin: 1.2em 0; border: 1px solid #eee; border-radius: 4px; padding: 0.3em;
          overflow-x: auto; }
.top { font-size: 0.85em; }
.images { display: flex; flex-wrap: wrap; gap: 0.8em; margin: 1.2em 0; }
.images figure { margin: 0; text-align: center; font-size: 0.85em; color: #555; }
"""


def render_html(sections: Sequence[Section], title: str, intro: str = "") -> str:
    """One HTML page: title, intro, a table of contents, then each section.

    Each section shows "What the seed saw" and "What this model shows" side by side
    under its heading, its headline numbers as tables, its figures and images (GIFs
    embedded as data URIs), then all its numbers (collapsed JSON). Text is HTML-escaped;
    plotly.js is embedded once so the page needs no network.
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
        f"<h2 id='contents'>Contents</h2><ol class='toc'>{toc}</ol>{body}</body></html>\n"
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
    numbers = section.to_json()["numbers"]
    return (
        f"<section id='{html.escape(section.key)}'><h2>{html.escape(section.title)}</h2>"
        "<div class='explain'>"
        f"<p class='seed'><b>What the seed saw.</b> {html.escape(section.seed_saw)}</p>"
        f"<p class='model'><b>What this model shows.</b> {html.escape(section.this_model)}</p>"
        f"</div>{numbers_html(numbers)}{figures}{_render_images(section)}"
        "<details><summary>All numbers (JSON)</summary>"
        f"<pre>{html.escape(json.dumps(numbers, indent=2))}</pre></details>"
        "<p class='top'><a href='#contents'>↑ contents</a></p></section>"
    )


def _render_images(section: Section) -> str:
    """The section's images (e.g. GIFs) as ``<img>`` with ``data:`` URIs, with captions."""
    if not section.images:
        return ""
    return (
        "<div class='images'>"
        + "".join(
            f"<figure><img src='{image.data_uri()}' alt='{html.escape(image.caption, quote=True)}'>"
            f"<figcaption>{html.escape(image.caption)}</figcaption></figure>"
            for image in section.images
        )
        + "</div>"
    )
