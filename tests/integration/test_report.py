"""The whole report: built on a tiny model, through the CLI, in a real browser, on MemoryDT.

- ``build_report`` runs every section of ``SECTIONS`` (whatever it holds) on a tiny
  random 9-step model and writes ``report.html`` and ``report.json``: every section is
  on the page (its anchor, figures and both explanations) and in the JSON with finite
  numbers, in order.
- ``dtlens report --model DIR`` on the same model saved with ``dtlens.save`` writes the
  same two files with the same numbers.
- The page opens in headless Chromium (Playwright, the system ``chromium``) with no
  network: every non-file request is blocked and must not have been attempted; no
  console errors, warnings or traces (plotly.js reports "Invalid color specifier" as a
  console trace); every figure rendered an SVG no wider than its box (nothing clipped);
  the verdict box opens the page. A screenshot goes to the test's tmp dir.
- Slow (``-m slow``): the full report on the shipped MemoryDT completes.
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

import pytest
import torch

import dtlens
from dtlens.cli import main as cli_main
from dtlens.model.checkpoint import WEIGHTS_FILE
from dtlens.report import SECTIONS, ReportConfig, build_report
from dtlens.report.browser import launch_chromium, system_chromium
from dtlens.training.dynamics import DYNAMICS_FILE, Dynamics
from tests.conftest import build_model

SHIPPED = Path(dtlens.__file__).resolve().parent / "pretrained" / "memorydt"
# small but complete: every section runs its full code path on fewer/shorter episodes
SMALL = dict(max_steps=12, calibration_episodes=4, random_walks=1, rtgs=(0.0, 0.5, 0.9))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """A checkpoint directory named ``tiny`` holding a tiny model and training dynamics."""
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("models") / "tiny"
    dtlens.save(build_model(n_ctx=26), directory)  # 9 steps, the window every section uses
    Dynamics(
        [0, 100, 200],
        {"success@0.9": [0.0, 0.5, 1.0], "decision_loss": [0.9, 0.69, 0.05]},
    ).save(directory / DYNAMICS_FILE)
    return directory


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    """The tiny model, loaded from its checkpoint directory."""
    return dtlens.load(tiny_dir)


@pytest.fixture(scope="module")
def built(tiny, tmp_path_factory) -> Path:
    """The report of the tiny model (one build shared by the page checks and the CLI's)."""
    out = tmp_path_factory.mktemp("report")
    page = build_report(tiny, out, ReportConfig(**SMALL), model_name="tiny", show_progress=False)
    assert page == out / "report.html"
    return out


def _walk_numbers(value, where: str):
    """Every number in a JSON value, with its path."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk_numbers(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk_numbers(item, f"{where}[{index}]")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield where, value


def test_every_section_in_json_with_finite_numbers(built):
    report = json.loads((built / "report.json").read_text())
    assert report["model"] == "tiny"
    assert [s["key"] for s in report["sections"]] == list(SECTIONS)
    for section in report["sections"]:
        numbers = list(_walk_numbers(section["numbers"], section["key"]))
        assert numbers, f"section {section['key']} reports no numbers"
        bad = [(where, v) for where, v in numbers if not math.isfinite(v)]
        assert not bad, bad
        assert section["seed_saw"] and section["this_model"], section["key"]


def test_every_section_on_the_page(built):
    page = (built / "report.html").read_text()
    report = json.loads((built / "report.json").read_text())
    assert page.count("<script type='text/javascript'>") == 1  # plotly.js inlined once
    starts = []
    for section in report["sections"]:
        key = section["key"]
        starts.append(page.index(f"<section id='{key}'>"))
        assert f"{key}-fig-0" in page, f"section {key} has no figure"
        assert html.escape(section["this_model"]) in page
        assert html.escape(section["seed_saw"]) in page
        assert f'href="#{key}"' in page  # listed in the contents
    assert starts == sorted(starts)


def test_cli_writes_the_same_files(tiny_dir, built, tmp_path, capsys):
    """``dtlens report`` with SMALL's sizes as flags writes the numbers ``build_report``
    wrote for the same checkpoint (the ``built`` fixture), section for section."""
    out = tmp_path / "cli"
    flags = ["--max-steps", "12", "--calibration-episodes", "4", "--random-walks", "1"]
    flags += ["--rtgs", *map(str, SMALL["rtgs"])]
    assert [int(flags[1]), int(flags[3]), int(flags[5])] == [
        SMALL["max_steps"], SMALL["calibration_episodes"], SMALL["random_walks"]
    ]  # fmt: skip
    code = cli_main(["report", "--model", str(tiny_dir), "--out", str(out), *flags])
    assert code == 0
    assert str(out / "report.html") in capsys.readouterr().out
    assert (out / "report.html").stat().st_size > 0
    cli = json.loads((out / "report.json").read_text())
    assert cli == json.loads((built / "report.json").read_text())
    assert [s["key"] for s in cli["sections"]] == list(SECTIONS)


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    if system_chromium() is None:
        pytest.skip("no system chromium on PATH (apt-get install -y chromium)")
    return sync_playwright


def test_page_renders_offline_in_chromium(built, tmp_path):
    sync_playwright = _playwright()
    page_path = built / "report.html"
    n_figures = len(re.findall(r"<div class='figure'>", page_path.read_text()))
    assert n_figures > 0
    blocked, errors = [], []

    def route(request_route):
        url = request_route.request.url
        if url.startswith("file:"):
            request_route.continue_()
        else:
            blocked.append(url)
            request_route.abort()

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route("**/*", route)
            page.on(
                "console",
                lambda m: (
                    errors.append(f"{m.type}: {m.text}")
                    if m.type not in ("log", "info", "debug")
                    else None
                ),
            )
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_path.as_uri(), wait_until="load")
            page.wait_for_function(
                "n => document.querySelectorAll('.figure .plotly-graph-div .main-svg').length >= n",
                arg=n_figures,
                timeout=60_000,
            )
            graphs = page.query_selector_all(".figure .plotly-graph-div")
            assert len(graphs) == n_figures
            missing = [
                g.get_attribute("id") for g in graphs if g.query_selector(".main-svg") is None
            ]
            assert not missing, f"figures without an SVG: {missing}"
            # every section's explanations are visible on the page, not collapsed
            for section in page.query_selector_all("section"):
                for cls in ("seed", "model"):
                    box = section.query_selector(f".{cls}")
                    assert box is not None and box.is_visible(), section.get_attribute("id")
            # nothing wider than the window (wide tables or figures would scroll sideways)
            assert page.evaluate("document.documentElement.scrollWidth") <= 1280
            # no figure cut off by its box (a colour bar past the edge would need a scroll)
            clipped = page.evaluate(
                "[...document.querySelectorAll('.figure')].filter(f => f.scrollWidth > "
                "f.clientWidth).map(f => f.querySelector('.plotly-graph-div').id)"
            )
            assert not clipped, f"figures wider than their box: {clipped}"
            verdict = page.query_selector(".verdicts")
            assert verdict is not None and verdict.is_visible()
            assert page.evaluate(
                "document.querySelector('.verdicts') === "
                "document.querySelector('h1').nextElementSibling.nextElementSibling"
            )
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert not blocked, f"the page tried to reach the network: {blocked}"
    assert not errors, f"console messages: {errors}"
    assert (tmp_path / "report.png").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.skipif(
    not (SHIPPED / WEIGHTS_FILE).exists(),
    reason=f"the shipped MemoryDT is not built ({SHIPPED}); run `dtlens build-memorydt`",
)
def test_full_report_on_shipped_memorydt(tmp_path):
    page = build_report(dtlens.load("memorydt"), tmp_path, model_name="memorydt")
    report = json.loads((tmp_path / "report.json").read_text())
    assert [s["key"] for s in report["sections"]] == list(SECTIONS)
    for section in report["sections"]:
        assert all(math.isfinite(v) for _, v in _walk_numbers(section["numbers"], ""))
    assert page.stat().st_size > 0


def test_cli_checks_out_first_says_it_replaces_and_ctrl_c_writes_nothing(
    tmp_path, monkeypatch, capsys
):
    import dtlens.report as report

    (tmp_path / "file.txt").write_text("x")
    absent_model = str(tmp_path / "absent")  # --out is checked before the model is loaded
    assert cli_main(["report", "--model", absent_model, "--out", str(tmp_path / "file.txt")]) == 2
    assert "--out" in capsys.readouterr().err

    model_dir = tmp_path / "model"
    dtlens.save(build_model(n_ctx=26), model_dir)
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("earlier page")
    (out / "report.json").write_text("{}")
    (out / "notes.txt").write_text("mine")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "run_sections", interrupted)
    assert cli_main(["report", "--model", str(model_dir), "--out", str(out)]) == 130
    captured = capsys.readouterr()
    assert "report.html and report.json will be replaced" in captured.out
    assert captured.err.splitlines() == [
        "dtlens report: interrupted; no file was written (the report is written when every "
        f"section is done; {out} is unchanged); rerun the same command"
    ]
    assert (out / "report.html").read_text() == "earlier page"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "report.html", "report.json"]

    monkeypatch.setattr(report, "run_sections", lambda *args, **kwargs: [])
    assert cli_main(["report", "--model", str(model_dir), "--out", str(out)]) == 0
    assert "(replacing the earlier report)" in capsys.readouterr().out
    assert json.loads((out / "report.json").read_text())["sections"] == []
    assert (out / "notes.txt").read_text() == "mine"
