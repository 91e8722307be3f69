"""The scrubbing report section on a tiny random model: registration, and the fallback.

A random model's decision at the decision square hardly depends on the window (its
action bias dominates), so resampling every input leaves the metric where it was and
the section says so instead of dividing by nothing. The full computation, checked
against direct calls of the public API, runs on the shipped model and the original
checkpoint in ``tests/integration/test_scrubbing_models.py``.
"""

from __future__ import annotations

import plotly.graph_objects as go
import pytest

from dtlens.report import SECTIONS
from dtlens.report.config import ReportConfig
from dtlens.report.section import Section
from dtlens.report.sections import SECTION_MODULES
from dtlens.report.sections import scrubbing as section_module
from tests.conftest import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_registered_after_circuit():
    assert SECTIONS.index("scrubbing") == SECTIONS.index("circuit") + 1
    assert SECTION_MODULES["scrubbing"] is section_module


def test_a_model_that_ignores_its_window_gets_the_fallback():
    section = section_module.run(build_model(n_ctx=26), ReportConfig(seed=3))
    assert isinstance(section, Section) and section.key == "scrubbing"
    n = section.numbers
    assert n["recovered"] == {} and "nothing to recover" in n["error"]
    assert n["windows"][:4] == ["key/top-key", "key/top-ball", "ball/top-key", "ball/top-ball"]
    assert n["rtgs"] == [0.9, 0.0] and n["n_samples"] == section_module.N_SAMPLES
    assert isinstance(section.figures[0], go.Figure) and "no hypothesis" in section.this_model
    section.to_json()  # finite, JSON-ready
