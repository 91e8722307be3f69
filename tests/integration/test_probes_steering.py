"""Probes and steering on the shipped MemoryDT and on the original project's checkpoint.

Expectations, independent of the sections' code:

- probes: at the decision token the instruction is linearly readable (>= 0.95 held out)
  at some depth where the trained model's 95 % interval lies above what the same probe
  reads on a randomly initialised model of the architecture; shuffled labels sit at
  chance (their interval holds 0.5);
- steering: the sections' chosen cell, replayed by hand with ``steer`` inside
  ``rollout``, sends every one of the four greedy layouts at RTG 0.9 to the other object,
  and the section answers the seed's question yes on both models (the shipped model's
  decision token is steered by the target's side, the original's by the instruction).
"""

from __future__ import annotations

import pytest

import dtlens
from dtlens.analysis.probes import linear_probes, memory_windows
from dtlens.analysis.steering import fact_directions, steer
from dtlens.env import SCENARIOS
from dtlens.report.config import ReportConfig
from dtlens.report.sections import probes as probes_section
from dtlens.report.sections import steering as steering_section
from dtlens.training.evaluate import rollout
from tests.conftest import ORIGINAL_DT, requires_shared

pytestmark = pytest.mark.usefixtures("one_thread")
MODELS = [
    pytest.param("memorydt", id="shipped"),
    pytest.param(str(ORIGINAL_DT), id="original", marks=requires_shared(ORIGINAL_DT)),
]


@pytest.fixture(scope="module", params=MODELS)
def model(request):
    return dtlens.load(request.param).eval()


def test_the_instruction_probe_beats_the_random_model_at_the_decision_token(model):
    data = memory_windows(model, n_routes=400, rtg=0.9, seed=11)
    result = linear_probes(model, data, "instruction", seed=11)
    acc, ci = result.accuracy_by_layer, result.ci_by_layer
    rand = result.random_model_accuracy_by_layer
    beats = [h for h in result.hooks if acc[h] >= 0.95 and ci[h][0] > rand[h]]
    assert beats, (acc, rand)
    # the decision square's view does not show the instruction: nothing before attention
    assert acc["blocks.0.hook_resid_pre"] < 0.7
    for fit in result.shuffled:
        assert fit.ci[0] <= 0.5 <= fit.ci[1]


def test_the_probes_section_reports_it(model):
    section = probes_section.run(model, ReportConfig())
    n = section.numbers
    last = model.cfg.n_layers - 1
    assert n["readable_from"] is not None
    acc, ci, rand = (n[k] for k in ("accuracy_by_layer", "ci_by_layer",
                                    "random_model_accuracy_by_layer"))  # fmt: skip
    assert any(acc[h] >= 0.9 and ci[h][0] > rand[h] for h in acc), (acc, rand)
    # the side to turn to (instruction XOR target order) is read by the last layer
    assert n["facts"]["target_side"]["accuracy_by_layer"][f"blocks.{last}.hook_resid_post"] >= 0.9


def test_steering_retargets_every_layout_and_the_rtg_still_decides(model):
    section = steering_section.run(model, ReportConfig())
    n = section.numbers
    assert n["answer"] == {"retargeted": True, "rtg_still_controls": True,
                           "independent_of_rtg": True}  # fmt: skip
    fact, hook, coef = (n["steered_by"][k] for k in ("direction", "hook", "coef"))
    data = memory_windows(model, steering_section.N_ROUTES, rtg=0.9, seed=0)
    direction = fact_directions(model, data, fact, [hook])[hook]
    for layout in SCENARIOS:
        value = layout.instruction == "ball" if fact == "instruction" else layout.target == "bottom"
        with steer(model, hook, (-1.0 if value else 1.0) * direction, coef, "last"):
            high = rollout(model, initial_rtg=0.9, n_episodes=1, layouts=[layout])
        assert high.terminated[0] and not high.success[0], layout.name  # the other object
    # unsteered: every layout succeeds at RTG 0.9 and none at RTG 0
    assert n["success_at_rtg"]["unsteered"] == {"0.9": 1.0, "0": 0.0}
