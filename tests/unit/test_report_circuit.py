"""The circuit report section: its numbers against direct calls of the public API.

The section runs once on a tiny random 9-step model; the pairs, metric and every number
are recomputed here from ``instruction_swap_pair``, ``edge_attribution_patching``,
``faithfulness_curve`` and ``circuit_faithfulness``; the scrubbing section tests the
same circuit, found once.
"""

from __future__ import annotations

import plotly.graph_objects as go
import pytest
import torch

from dtlens.analysis.circuits import (
    circuit_faithfulness,
    edge_attribution_patching,
    faithfulness_curve,
    parse_edge,
)
from dtlens.analysis.edits import instruction_swap_pair
from dtlens.analysis.metrics import make_logit_diff_metric
from dtlens.env import SCENARIOS
from dtlens.model import TrajectoryBatch
from dtlens.report import SECTIONS
from dtlens.report.config import ReportConfig
from dtlens.report.sections import circuit as section_module
from dtlens.report.sections import scrubbing
from dtlens.report.sections.path_patching import Pairs
from tests.conftest import build_model

RTG = 0.9
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    return build_model(n_ctx=26)  # 9 steps, like MemoryDT


@pytest.fixture(scope="module")
def section(model):
    return section_module.run(model, ReportConfig(high_rtg=RTG))


@pytest.fixture(scope="module")
def args(model):
    pairs = [instruction_swap_pair(s.name, n_steps=9, rtg=RTG, padding="mask") for s in SCENARIOS]
    clean = TrajectoryBatch.cat([p.clean for p in pairs])
    corrupt = TrajectoryBatch.cat([p.corrupt for p in pairs])
    return model, clean, corrupt, make_logit_diff_metric("left", "right")


def test_registered_after_path_patching():
    assert SECTIONS.index("circuit") == SECTIONS.index("path_patching") + 1


def test_the_circuit_is_the_smallest_faithful_top_k_of_eap_ig(section, args):
    n = section.numbers
    assert n["layouts"] == [s.name for s in SCENARIOS] and n["n_edges_total"] == 191
    scores = edge_attribution_patching(*args, "eap-ig", steps=5)
    curve = faithfulness_curve(*args, scores)
    assert n["curve"]["sizes"] == curve.sizes.tolist()
    assert n["curve"]["faithfulness"] == pytest.approx(curve.faithfulness.tolist(), abs=2e-4)
    assert n["n_edges"] == curve.smallest(0.9)
    top = scores.top(n["n_edges"] if n["n_edges"] is not None else 15)
    assert list(n["eap_ig_edges"]) == [str(e) for e in top]
    exact = float(circuit_faithfulness(*args, [top])[0])
    if n["n_edges"] is None:  # no top-k reaches 0.9: no faithfulness is claimed
        assert n["faithfulness"] is None and exact < 0.9
    else:
        assert n["faithfulness"] == pytest.approx(exact, abs=2e-4)
        assert n["faithfulness"] >= 0.9


def test_acdc_and_the_shared_edges(section, args):
    """ACDC's circuit, judged from outside: its edges, evaluated exactly with every
    other edge corrupted, keep the faithfulness the section reports."""
    a = section.numbers["acdc"]
    assert a["threshold"] == section_module.ACDC_THRESHOLD
    edges = [parse_edge(e) for e in a["edges"]]
    assert len(edges) == a["n_edges"]
    exact = float(circuit_faithfulness(*args, [edges])[0])
    assert a["faithfulness"] == pytest.approx(exact, abs=2e-4)
    shared = set(section.numbers["eap_ig_edges"]) & set(a["edges"])
    assert section.numbers["shared_edges"] == sorted(shared)
    heads = section.numbers["heads"]
    assert heads["acdc_circuit"] == sorted({e.split("->")[0] for e in a["edges"]
                                            if e.startswith("L")})  # fmt: skip


def test_figures_and_text(section):
    assert len(section.figures) == 3 and all(isinstance(f, go.Figure) for f in section.figures)
    curve = section.figures[0].data[0]
    assert list(curve.y) == pytest.approx(section.numbers["curve"]["faithfulness"], abs=2e-4)
    assert f"ACDC keeps {section.numbers['acdc']['n_edges']} edges" in section.this_model
    section.to_json()  # every number is finite and serialisable


def test_a_model_blind_to_the_instruction_draws_nothing():
    model = build_model(n_ctx=26)
    with torch.no_grad():
        model.state_embed.weight.zero_()  # no observation reaches the model
    section = section_module.run(model, ReportConfig(high_rtg=RTG))
    assert section.figures == [] and "nothing is drawn" in section.this_model
    assert section.numbers["layouts"] == []


def test_the_scrubbing_section_tests_the_circuit_the_circuit_section_found(model, section):
    """``find_circuit`` is the one definition of the circuit: the circuit section reports
    its edges, and the scrubbing section's hypothesis is built on the same edges."""
    config = ReportConfig(high_rtg=RTG)
    found = section_module.find_circuit(Pairs(model, config))
    assert [str(e) for e in found.edges] == list(section.numbers["eap_ig_edges"])
    assert scrubbing.circuit_heads(model, config)["edges"] == list(section.numbers["eap_ig_edges"])
