"""Render one PNG per report section for the docs' analyses page (docs/analyses.md).

Runs every section of the report on a model, writes each section's headline figure as
HTML and screenshots it with headless Chromium (Playwright driving Debian's
``chromium``; nothing is downloaded). Rerun after rebuilding the shipped model:

    python docs/figures/render.py --model memorydt --out docs/figures
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

import dtlens
from dtlens.report import SECTIONS, ReportConfig, run_sections
from dtlens.report.browser import launch_chromium, system_chromium

#: which figure of each section the docs show (index into Section.figures)
HEADLINE = {"patching": 0, "path_patching": 0, "circuit": 1}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="memorydt", help="model to run the sections on")
    parser.add_argument("--out", type=Path, default=Path("docs/figures"), help="PNG folder")
    parser.add_argument("--width", type=int, default=1000, help="screenshot width in px")
    parser.add_argument(
        "--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="only these"
    )
    args = parser.parse_args(argv)
    if system_chromium() is None:
        parser.error("needs Debian's chromium on PATH (apt-get install chromium)")
    sections = run_sections(dtlens.load(args.model), ReportConfig(), args.sections)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": args.width, "height": 600})
        for section in sections:
            figure = section.figures[HEADLINE.get(section.key, 0)]
            html = Path(tmp) / f"{section.key}.html"
            figure.write_html(html, include_plotlyjs=True, full_html=True)
            page.goto(html.as_uri())
            page.wait_for_selector(".main-svg")
            png = args.out / f"{section.key}.png"
            page.locator(".js-plotly-plot").first.screenshot(path=str(png))
            print(png)
        browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
