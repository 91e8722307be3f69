"""launch_chromium: the system binary and the offline flags, or a clear error without it."""

from __future__ import annotations

import types

import pytest

from dtlens.errors import DTLensError
from dtlens.report import browser


def fake_playwright(calls: list) -> object:
    launcher = types.SimpleNamespace(launch=lambda **kw: calls.append(kw) or "browser")
    return types.SimpleNamespace(chromium=launcher)


def test_launches_the_system_chromium_with_the_offline_flags(monkeypatch):
    monkeypatch.setattr(browser.shutil, "which", lambda name: f"/usr/bin/{name}")
    calls: list = []
    assert browser.launch_chromium(fake_playwright(calls)) == "browser"
    [call] = calls
    assert call["executable_path"] == "/usr/bin/chromium"
    assert call["args"] == list(browser.CHROMIUM_FLAGS)
    # no sandbox in CI containers, and no network traffic of its own
    assert {"--no-sandbox", "--disable-background-networking", "--disable-component-update"} <= set(
        call["args"]
    )


def test_without_chromium_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(browser.shutil, "which", lambda name: None)
    calls: list = []
    with pytest.raises(DTLensError, match=r"no chromium on PATH: install Debian's \(apt-get"):
        browser.launch_chromium(fake_playwright(calls))
    assert calls == []


# ------------------------------------------------------------- a page in the real browser
def _page_sections():
    """Hand-made sections with every kind of patching figure: bars (plotly.js warned
    "Invalid color specifier" once per bar for numeric colours), greyed and partly
    greyed heatmaps, a grid wider than the page, headline tables and a verdict."""
    import torch

    from dtlens.analysis.patching.results import PatchingResult
    from dtlens.plotting import plot_attention_heads, plot_patching
    from dtlens.report.section import Section

    tokens = [f"{k}{t}" for t in range(1, 10) for k in "RSA"][:26]
    bars = PatchingResult(torch.linspace(-1, 1, 26), ("token",), {"token": tokens})
    weak = PatchingResult(
        torch.randn(2, 26),
        ("layer", "pos"),
        {"layer": ["0", "1"], "pos": tokens},
        info={"clean_metric": [0.01], "corrupt_metric": [0.0]},
    )
    pairs = PatchingResult(
        torch.randn(2, 2, 26),
        ("pair", "layer", "pos"),
        {"pair": ["a", "b"], "layer": ["0", "1"], "pos": tokens},
        info={"clean_metric": [5.0, 0.01], "corrupt_metric": [0.0, 0.0]},
    )
    figures = [
        plot_patching(bars),
        plot_patching(weak),
        plot_patching(pairs),
        plot_attention_heads(torch.softmax(torch.randn(4, 26, 26), -1), tokens),  # 1200 px
        plot_patching(bars, title=" ".join(["a title far too long for one line"] * 8)),
    ]
    numbers = {
        "gaps": {"key/top-key": 5.8, "ball/top-ball": 0.01},
        "heads": {"q": {"L0H0": 0.1, "L0H1": 0.9}, "v": {"L0H0": 0.0, "L0H1": -0.2}},
        "grows_every_layer": {"left": True, "right": True, "forward": False},
    }
    return [Section("congruence", "A demo", figures, numbers, "The seed saw.", "Here.")]


def test_a_page_of_patching_figures_logs_nothing_in_chromium(tmp_path):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    if browser.system_chromium() is None:
        pytest.skip("no system chromium on PATH (apt-get install -y chromium)")
    from dtlens.report.html import FIGURE_WIDTH, render_html

    page_path = tmp_path / "page.html"
    page_path.write_text(render_html(_page_sections(), title="demo"))
    messages = []
    with sync_playwright() as p:
        chromium = browser.launch_chromium(p)
        try:
            page = chromium.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
            page.goto(page_path.as_uri(), wait_until="load")
            page.wait_for_function(
                "document.querySelectorAll('.figure .main-svg').length >= 5", timeout=60_000
            )
            page.wait_for_timeout(500)  # late warnings (hover labels, colour bars)
            widths = page.evaluate(
                "[...document.querySelectorAll('.figure')].map(f => [f.scrollWidth, "
                "f.clientWidth, f.querySelector('.main-svg').getAttribute('width')])"
            )
            # every title inside its figure: long ones wrapped, none past an edge
            titles_out = page.evaluate(
                "[...document.querySelectorAll('.figure')].filter(f => { "
                "const svg = f.querySelector('.main-svg').getBoundingClientRect(); "
                "return [...f.querySelectorAll('.gtitle')].some(t => { "
                "const r = t.getBoundingClientRect(); "
                "return r.right > svg.right + 1 || r.top < svg.top - 1; }); }).length"
            )
            lines = page.evaluate(
                "document.querySelectorAll('#congruence-fig-4 .gtitle tspan.line').length"
            )
            verdicts = page.eval_on_selector_all(
                ".verdicts li .tag", "els => els.map(e => e.textContent)"
            )
        finally:
            chromium.close()
    assert messages == []  # zero console messages of any kind
    assert all(scroll <= client for scroll, client, _ in widths), widths  # nothing clipped
    assert float(widths[3][2]) == FIGURE_WIDTH  # the 1200 px grid scaled to the page
    assert titles_out == 0 and lines >= 2
    assert verdicts == ["does not hold"]  # congruence: forward does not grow
