"""The probes and steering report sections: their numbers against direct calls of the
public API (``memory_windows``, ``linear_probes``, ``random_model``, ``fact_directions``,
``steering_sweep``, ``steer`` + ``rollout``) on a tiny random 9-step model."""

from __future__ import annotations

import plotly.graph_objects as go
import pytest

from dtlens.analysis.probes import (
    linear_probes,
    memory_windows,
    probe_activations,
    random_model,
    residual_hooks,
)
from dtlens.analysis.probes.layers import RANDOM_SEED
from dtlens.analysis.steering import fact_directions, steer, steering_sweep
from dtlens.env import SCENARIOS
from dtlens.report import SECTIONS
from dtlens.report.config import ReportConfig
from dtlens.report.sections import probes as probes_section
from dtlens.report.sections import steering as steering_section
from dtlens.training.evaluate import rollout
from tests.conftest import build_model

pytestmark = pytest.mark.usefixtures("one_thread")
CONFIG = ReportConfig(max_steps=12, seed=3)


@pytest.fixture(scope="module")
def model():
    return build_model(n_ctx=26)  # 9 steps, like MemoryDT


@pytest.fixture(scope="module")
def probes(model):
    return probes_section.run(model, CONFIG)


@pytest.fixture(scope="module")
def steering(model):
    return steering_section.run(model, CONFIG)


def test_registered_after_the_circuit_sections():
    assert SECTIONS.index("probes") > SECTIONS.index("circuit")
    assert SECTIONS.index("steering") == SECTIONS.index("probes") + 1


def test_probe_numbers_are_the_public_api_s(model, probes):
    n = probes.numbers
    data = memory_windows(model, probes_section.N_ROUTES, rtg=CONFIG.high_rtg, seed=CONFIG.seed)
    baseline = random_model(model, RANDOM_SEED + CONFIG.seed)
    result = linear_probes(model, data, "instruction", seed=CONFIG.seed, baseline=baseline)
    assert list(n["accuracy_by_layer"]) == residual_hooks(model)
    for key in (
        "accuracy_by_layer",
        "random_model_accuracy_by_layer",
        "shuffled_accuracy_by_layer",
    ):
        got = getattr(result, key)
        assert n[key] == pytest.approx({h: round(v, 4) for h, v in got.items()}, abs=1e-9)
    assert n["ci_by_layer"] == {h: [round(lo, 4), round(hi, 4)]
                                for h, (lo, hi) in result.ci_by_layer.items()}  # fmt: skip
    across = memory_windows(model, probes_section.N_ROUTES, (CONFIG.low_rtg, CONFIG.high_rtg),
                            CONFIG.seed + 1, n_rtg_buckets=4)  # fmt: skip
    bucket = linear_probes(model, across, "rtg_bucket", seed=CONFIG.seed, baseline=baseline)
    fact = n["facts"]["rtg_bucket"]
    assert fact["accuracy_by_layer"] == pytest.approx(
        {h: round(v, 4) for h, v in bucket.accuracy_by_layer.items()}
    )
    assert fact["best_hook"] == bucket.best_hook()
    assert set(n["facts"]) == {"instruction", "target_side", "instruction_any_rtg",
                               "rtg_bucket", "steps_to_decision"}  # fmt: skip


def test_probe_figures_and_text(probes):
    assert len(probes.figures) == 2 and all(isinstance(f, go.Figure) for f in probes.figures)
    trained = probes.figures[0].data[0]
    assert list(trained.y) == pytest.approx(list(probes.numbers["accuracy_by_layer"].values()),
                                            abs=1e-4)  # fmt: skip
    assert "random" in probes.this_model and "shuffled labels" in probes.this_model
    probes.to_json()  # finite and serialisable


def test_steering_numbers_are_the_public_api_s(model, steering):
    n = steering.numbers
    data = memory_windows(model, steering_section.N_ROUTES, rtg=CONFIG.high_rtg, seed=CONFIG.seed)
    hooks = residual_hooks(model)[1:]
    rtgs = (CONFIG.high_rtg, CONFIG.low_rtg)
    fact = n["steered_by"]["direction"]
    dirs = fact_directions(model, data, fact, hooks)
    sweep = steering_sweep(model, dirs, fact, steering_section.COEFFICIENTS, rtgs,
                           max_steps=CONFIG.max_steps, seed=CONFIG.seed)  # fmt: skip
    assert n["retarget_rate"][fact] == {
        h: {f"{c:g}": pytest.approx(v) for c, v in row.items()}
        for h, row in sweep.retarget_rate.items()
    }
    hook, coef = sweep.best()
    assert (n["steered_by"]["hook"], n["steered_by"]["coef"]) == (hook, coef)
    success = sweep.success_at_rtg()
    assert n["success_at_rtg"]["unsteered"] == {
        f"{r:g}": pytest.approx(v) for r, v in success["unsteered"].items()
    }
    assert n["success_at_rtg"]["steered"] == {
        f"{r:g}": pytest.approx(v) for r, v in success["steered"].items()
    }
    # the chosen cell by hand, at both RTGs: each layout pushed to its other instruction
    # (or side) and played greedily (ending at the other object), and played unsteered
    # (success); shares of the 4 layouts
    other, success = dict.fromkeys(rtgs, 0.0), dict.fromkeys(rtgs, 0.0)
    for rtg in rtgs:
        for layout in SCENARIOS:
            sign = 1.0 if fact_value(layout, fact) == 0 else -1.0
            play = {"initial_rtg": rtg, "n_episodes": 1, "layouts": [layout],
                    "max_steps": CONFIG.max_steps}  # fmt: skip
            with steer(model, hook, sign * dirs[hook], coef, "last"):
                r = rollout(model, **play)
            other[rtg] += (r.terminated[0] and not r.success[0]) / 4
            success[rtg] += rollout(model, **play).success[0] / 4
    high, low = rtgs
    assert n["retarget_rate"][fact][hook][f"{coef:g}"] == pytest.approx(other[high])
    control = {"unsteered": success[high] - success[low], "steered": other[high] - other[low]}
    assert n["rtg_control"] == pytest.approx(control)
    answer = n["answer"]
    slack = steering_section.RTG_SLACK
    keeps = control["unsteered"] > 0 and control["steered"] >= control["unsteered"] - slack
    assert answer["rtg_still_controls"] == keeps
    assert answer["retargeted"] == (other[high] >= steering_section.RETARGETED)
    assert answer["independent_of_rtg"] == (answer["retargeted"] and keeps)


def test_the_instruction_cosine_across_target_orders(model, steering):
    data = memory_windows(model, steering_section.N_ROUTES, rtg=CONFIG.high_rtg, seed=CONFIG.seed)
    hooks = residual_hooks(model)[1:]
    acts = probe_activations(model, data, hooks)
    for hook in hooks:
        gaps = []
        for top in ("key", "ball"):  # the upper object, read from the layout names
            rows = [i for i, name in enumerate(data.layouts) if name.endswith(f"top-{top}")]
            ball = [i for i in rows if data.layouts[i].startswith("ball")]
            key = [i for i in rows if data.layouts[i].startswith("key")]
            gaps.append(acts[hook][ball].mean(0) - acts[hook][key].mean(0))
        cosine = float(gaps[0] @ gaps[1] / (gaps[0].norm() * gaps[1].norm()))
        assert steering.numbers["instruction_cosine_across_orders"][hook] == pytest.approx(
            cosine, abs=1e-4
        )


def fact_value(layout, fact: str) -> int:
    if fact == "instruction":
        return ("key", "ball").index(layout.instruction)
    return ("top", "bottom").index(layout.target)


def test_steering_figures_and_text(steering):
    assert len(steering.figures) == 3 and all(isinstance(f, go.Figure) for f in steering.figures)
    assert set(steering.numbers["retarget_rate"]) == {"instruction", "target_side"}
    assert "retarget" in steering.this_model or "other object" in steering.this_model
    steering.to_json()
