"""The main job: reproduce the MemoryDT post's findings on a model and write one HTML page.

Each finding is a module of :mod:`dtlens.report.sections` with a
``run(model, config) -> Section`` function; :func:`build_report` runs them in order
with a progress bar and writes ``report.html`` (self-contained: plotly.js inlined;
it opens with the verdict box of :mod:`dtlens.report.verdict`: which of the seed's
findings hold on this model) and ``report.json`` (the verdicts and every section's
numbers).

The package imports light: :data:`SECTIONS`, :data:`REPORT_FILES` and
:class:`ReportConfig` come without torch or plotly (``dtlens report --help`` needs
only them); the sections, the HTML and :class:`Section` are imported when used.

Examples:
    >>> import dtlens
    >>> from dtlens.report import build_report
    >>> path = build_report(dtlens.load("memorydt"), "report/")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dtlens.errors import ConfigError
from dtlens.files import check_writable, write_files_atomic
from dtlens.lazy import lazy_attributes
from dtlens.report.config import ReportConfig

if TYPE_CHECKING:
    from dtlens.model.hooked_dt import HookedDecisionTransformer
    from dtlens.report.section import Section, write_section

__all__ = [
    "REPORT_FILES",
    "SECTIONS",
    "ReportConfig",
    "Section",
    "build_report",
    "run_sections",
    "write_section",
]

#: The two files :func:`build_report` writes into its output directory.
REPORT_FILES: tuple[str, str] = ("report.html", "report.json")

#: The report's sections, in order: the keys of dtlens.report.sections.SECTION_MODULES
#: (spelled out so that naming them imports no section; a test checks they agree).
SECTIONS: tuple[str, ...] = (
    "calibration",
    "set_routine",
    "look_back",
    "rtg_entropy",
    "attention",
    "congruence",
    "patching",
    "path_patching",
    "circuit",
    "scrubbing",
    "probes",
    "steering",
    "dynamics",
    "maps",
    "agent_comparison",
    "clone",
)

#: name -> the module it is imported from on first use (they import plotly)
_LAZY = {"Section": "dtlens.report.section", "write_section": "dtlens.report.section"}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


def run_sections(
    model: HookedDecisionTransformer,
    config: ReportConfig | None = None,
    sections: Sequence[str] = SECTIONS,
    show_progress: bool = True,
) -> list[Section]:
    """Run the named sections on ``model``; returns them in order."""
    from tqdm.auto import tqdm

    from dtlens.report.sections import SECTION_MODULES

    config = config or ReportConfig()
    results = []
    bar = tqdm(sections, desc="report", unit="section", disable=not show_progress)
    for name in bar:
        bar.set_postfix_str(name)
        if name not in SECTION_MODULES:
            known = list(SECTION_MODULES)
            raise ConfigError(f"unknown report section {name!r}; sections: {known}.")
        results.append(SECTION_MODULES[name].run(model, config))
    return results


def build_report(
    model: HookedDecisionTransformer,
    out_dir: str | Path,
    config: ReportConfig | None = None,
    sections: Sequence[str] = SECTIONS,
    model_name: str = "model",
    show_progress: bool = True,
) -> Path:
    """Run every section; write ``out_dir/report.html`` and ``report.json``; return the page.

    ``out_dir`` is checked to be writable before any section runs. Both files are
    written when every section is done, atomically and together
    (:func:`dtlens.files.write_files_atomic`): an interrupted report leaves an earlier
    report in ``out_dir`` as it was, never half of one.

    Raises:
        OutputPathError: ``out_dir`` cannot be written (checked before any work).
    """
    from dtlens.report.html import render_html
    from dtlens.report.verdict import verdicts

    out = check_writable(out_dir, "dir")
    results = run_sections(model, config, sections, show_progress)
    cfg = model.cfg
    intro = (
        f"Model: {model_name} — {cfg.n_layers} layers, d_model {cfg.d_model}, {cfg.n_heads} "
        f"heads, d_mlp {cfg.d_mlp}, context {cfg.n_timesteps} steps. Every number and figure "
        "below was computed live by dtlens on this model."
    )
    html_path = out / REPORT_FILES[0]
    sections_json = [s.to_json() for s in results]
    verdict = verdicts({s["key"]: s["numbers"] for s in sections_json})
    html = render_html(results, title="dtlens: the MemoryDT findings", intro=intro, verdict=verdict)
    numbers = {
        "model": model_name,
        "verdict": [v.to_json() for v in verdict],
        "sections": sections_json,
    }
    write_files_atomic(
        {html_path: html, out / REPORT_FILES[1]: json.dumps(numbers, indent=2) + "\n"}
    )
    return html_path
