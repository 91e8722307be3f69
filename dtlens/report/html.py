"""Render report sections into one self-contained HTML page (plotly.js inlined once).

Examples:
    >>> page = render_html([section], title="dtlens report")  # doctest: +SKIP
    >>> "<script" in page  # doctest: +SKIP
    True
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from dtlens.report.section import Section
from dtlens.report.tables import numbers_html
from dtlens.report.verdict import Verdict, verdict_html, verdicts

__all__ = ["FIGURE_WIDTH", "render_html"]

#: The widest a figure is drawn (px): the page's content width, so no colour bar or
#: facet is cut off; wider figures are scaled down, keeping their aspect ratio.
FIGURE_WIDTH = 1040
#: Average width of a title character (px, plotly's 17 px title font) for wrapping.
_TITLE_CHAR_PX = 9.0
#: plotly's default top margin and figure height (px).
_PLOTLY_TOP_MARGIN = 100
_PLOTLY_HEIGHT = 450

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
table.inner { border-collapse: collapse; font-size: 0.95em; font-variant-numeric: tabular-nums; }
table.numbers table.inner th, table.numbers table.inner td { padding: 0.1em 0.45em;
       border-color: #e6e6e6; white-space: normal; overflow-wrap: anywhere; }
table.numbers { max-width: 100%; }
table.numbers td { overflow-wrap: anywhere; }
table.records td:first-child { white-space: nowrap; }
table.records th { white-space: normal; overflow-wrap: anywhere; }
details pre { background: #fafafa; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.figure { margin: 1.2em 0; border: 1px solid #eee; border-radius: 4px; padding: 0.3em;
          overflow-x: auto; }
.top { font-size: 0.85em; }
.images { display: flex; flex-wrap: wrap; gap: 0.8em; margin: 1.2em 0; }
.images figure { margin: 0; text-align: center; font-size: 0.85em; color: #555; }
.verdicts { border: 1px solid #ccd; border-radius: 6px; padding: 0.2em 1.2em 0.6em;
            background: #fcfcff; margin: 1.2em 0; }
.verdicts h2 { margin-top: 0.6em; border: none; }
.verdicts ul { list-style: none; padding-left: 0; margin: 0; }
.verdicts li { margin: 0.35em 0; }
.verdicts .tag { display: inline-block; min-width: 8.5em; font-weight: 600; font-size: 0.85em;
                 padding: 0.05em 0.5em; border-radius: 3px; text-align: center; }
.verdicts .holds .tag { background: #e3f4e6; color: #1c6b2e; }
.verdicts .fails .tag { background: #fbe4e4; color: #9b1c1c; }
.verdicts .unjudged .tag { background: #eeeeee; color: #555; }
.verdicts .because { color: #555; font-size: 0.9em; }
"""


def render_html(
    sections: Sequence[Section],
    title: str,
    intro: str = "",
    verdict: Sequence[Verdict] | None = None,
) -> str:
    """One HTML page: title, intro, the verdict box, a table of contents, then each section.

    The verdict box (:mod:`dtlens.report.verdict`) says which of the seed's findings hold
    on this model; ``verdict`` defaults to the one computed from ``sections``' numbers.
    Figures wider than :data:`FIGURE_WIDTH` are scaled down to it.

    Each section shows "What the seed saw" and "What this model shows" side by side
    under its heading, its headline numbers as tables, its figures and images (GIFs
    embedded as data URIs), then all its numbers (collapsed JSON). Text is HTML-escaped;
    plotly.js is embedded once so the page needs no network.
    """
    toc = "".join(
        f'<li><a href="#{html.escape(s.key)}">{html.escape(s.title)}</a></li>' for s in sections
    )
    body = "".join(_render_section(section) for section in sections)
    if verdict is None:
        verdict = verdicts({s.key: s.to_json()["numbers"] for s in sections})
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        f"<h1>{html.escape(title)}</h1><p class='meta'>{html.escape(intro)}</p>"
        f"{verdict_html(verdict)}"
        f"<h2 id='contents'>Contents</h2><ol class='toc'>{toc}</ol>{body}</body></html>\n"
    )


def _render_section(section: Section) -> str:
    figures = "".join(
        "<div class='figure'>"
        + _fitted(figure).to_html(
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


def _fitted(figure: go.Figure) -> go.Figure:
    """``figure`` fitted to the page: scaled down to :data:`FIGURE_WIDTH` when wider
    (aspect kept), and a title too long for its width wrapped onto more lines (plotly
    never wraps one, and the end of a long title is cut off). A copy when changed."""
    width = figure.layout.width
    title = figure.layout.title.text
    wrapped = _wrap(title, min(width or FIGURE_WIDTH, FIGURE_WIDTH)) if title else title
    if (width is None or width <= FIGURE_WIDTH) and wrapped == title:
        return figure
    fitted = go.Figure(figure)
    if width is not None and width > FIGURE_WIDTH:
        fitted.update_layout(width=FIGURE_WIDTH)
        if figure.layout.height is not None:
            fitted.update_layout(height=round(figure.layout.height * FIGURE_WIDTH / width))
    if wrapped != title:  # lines hang from the top; the plot starts below the last one
        lines = wrapped.count("<br>") + 1
        top = max(figure.layout.margin.t or _PLOTLY_TOP_MARGIN, 48 + 24 * lines)
        height = fitted.layout.height or _PLOTLY_HEIGHT
        fitted.update_layout(
            title={"text": wrapped, "y": 1 - 24 / height, "yref": "container",
                   "yanchor": "top"},
            margin={"t": top},
        )  # fmt: skip
    return fitted


def _wrap(title: str, width: float) -> str:
    """``title`` with ``<br>`` between words wherever a line would pass ``width`` pixels
    (at :data:`_TITLE_CHAR_PX` per character)."""
    limit = max(20, int(width / _TITLE_CHAR_PX))
    lines = []
    for line in title.split("<br>"):
        if len(re.sub(r"<[^>]+>", "", line)) <= limit:
            lines.append(line)
            continue
        current = ""
        for word in line.split(" "):
            if current and len(current) + 1 + len(word) > limit:
                lines.append(current)
                current = word
            else:
                current = f"{current} {word}" if current else word
        lines.append(current)
    return "<br>".join(lines)
