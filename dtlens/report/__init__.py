"""The main job: reproduce the MemoryDT post's findings on a model and write one HTML page.

Each finding is a module of :mod:`dtlens.report.sections` with a
``run(model, config) -> Section`` function; :func:`build_report` runs them in order
with a progress bar and writes ``report.html`` (self-contained: plotly.js inlined)
and ``report.json`` (every section's numbers).

Examples:
    >>> import dtlens
    >>> from dtlens.report import build_report
    >>> path = build_report(dtlens.load("memorydt"), "report/")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.report.config import ReportConfig
from dtlens.report.html import render_html
from dtlens.report.section import Section, write_section

__all__ = ["SECTIONS", "ReportConfig", "Section", "build_report", "run_sections", "write_section"]

#: The report's sections, in order (modules of dtlens.report.sections).
SECTIONS: tuple[str, ...] = (
    "calibration",
    "set_routine",
    "look_back",
    "rtg_entropy",
    "attention",
    "congruence",
    "patching",
    "path_patching",
    "dynamics",
)


def run_sections(
    model: HookedDecisionTransformer,
    config: ReportConfig | None = None,
    sections: Sequence[str] = SECTIONS,
    show_progress: bool = True,
) -> list[Section]:
    """Run the named sections on ``model``; returns them in order."""
    config = config or ReportConfig()
    results = []
    bar = tqdm(sections, desc="report", unit="section", disable=not show_progress)
    for name in bar:
        bar.set_postfix_str(name)
        module = importlib.import_module(f"dtlens.report.sections.{name}")
        results.append(module.run(model, config))
    return results


def build_report(
    model: HookedDecisionTransformer,
    out_dir: str | Path,
    config: ReportConfig | None = None,
    sections: Sequence[str] = SECTIONS,
    model_name: str = "model",
    show_progress: bool = True,
) -> Path:
    """Run every section; write ``out_dir/report.html`` and ``report.json``; return the page."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = run_sections(model, config, sections, show_progress)
    cfg = model.cfg
    intro = (
        f"Model: {model_name} — {cfg.n_layers} layers, d_model {cfg.d_model}, {cfg.n_heads} "
        f"heads, d_mlp {cfg.d_mlp}, context {cfg.n_timesteps} steps. Every number and figure "
        "below was computed live by dtlens on this model."
    )
    html_path = out / "report.html"
    html_path.write_text(render_html(results, title="dtlens: the MemoryDT findings", intro=intro))
    numbers = {"model": model_name, "sections": [s.to_json() for s in results]}
    (out / "report.json").write_text(json.dumps(numbers, indent=2) + "\n")
    return html_path
