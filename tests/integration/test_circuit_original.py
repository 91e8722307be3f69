"""Circuit discovery on the original project's MemoryDT, whose memory circuit is known.

The seed post found that the instruction reaches the decision through one layer-0 head
reading the first state and the MLPs after it. On the instruction-swap pairs of all four
layouts, EAP-IG's five best edges and ACDC (exact, greedy) must both recover that
circuit, and five edges must carry at least 90 % of the clean - corrupt logit
difference (exact faithfulness).
"""

from __future__ import annotations

import pytest
import torch

import dtlens
from dtlens.analysis.circuits import acdc, edge_attribution_patching, faithfulness_curve
from dtlens.analysis.edits import all_layouts, instruction_swap_pair
from dtlens.model import TrajectoryBatch
from tests.conftest import ORIGINAL_DT, requires_shared

pytestmark = requires_shared(ORIGINAL_DT)

#: the circuit: state embedding -> L0H1's values -> both MLPs -> the logits
CIRCUIT = {"state_embed->L0H1.v", "L0H1->MLP0.in", "L0H1->MLP1.in", "MLP0->MLP1.in",
           "MLP1->logits"}  # fmt: skip


@pytest.fixture(scope="module")
def task():
    model = dtlens.load(ORIGINAL_DT).eval()
    pairs = [instruction_swap_pair(layout, model=model) for layout in all_layouts()]
    clean = TrajectoryBatch.cat([p.clean for p in pairs])
    corrupt = TrajectoryBatch.cat([p.corrupt for p in pairs])
    answer = torch.tensor([p.answer_action for p in pairs])
    wrong = torch.tensor([p.wrong_action for p in pairs])

    def metric(logits):
        last = logits[:, -1]
        return last.gather(1, answer[:, None])[:, 0] - last.gather(1, wrong[:, None])[:, 0]

    return model, clean, corrupt, metric


def test_eap_ig_ranks_the_known_circuit_first_and_it_is_faithful(task):
    scores = edge_attribution_patching(*task)
    assert {str(e) for e in scores.top(5)} == CIRCUIT
    curve = faithfulness_curve(*task, scores, sizes=[0, 4, 5, 191])
    assert curve.smallest(0.9) == 5
    assert curve.at(0) == pytest.approx(0.0, abs=1e-4) and curve.at(191) == pytest.approx(
        1.0, abs=1e-4
    )


def test_acdc_keeps_exactly_the_known_circuit(task):
    result = acdc(*task, threshold=0.02)
    assert {str(e) for e in result.edges} == CIRCUIT
    assert result.faithfulness > 0.9


def test_the_report_section_finds_it_too():
    from dtlens.report.config import ReportConfig
    from dtlens.report.sections import circuit

    n = circuit.run(dtlens.load(ORIGINAL_DT).eval(), ReportConfig()).numbers
    assert n["n_edges"] == 5 and set(n["eap_ig_edges"]) == CIRCUIT == set(n["acdc"]["edges"])
    assert n["faithfulness"] > 0.9 and n["heads"]["eap_ig_circuit"] == ["L0H1"]
