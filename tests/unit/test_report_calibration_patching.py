"""The calibration and activation-patching report sections, against direct library calls.

- calibration: run on a scripted decision transformer whose greedy policy is known
  (the key/top-key route, turning left, when the RTG is at least 0.5; ``done`` forever
  otherwise), so every per-RTG number is computed by hand here, and checked against a
  separate :func:`~dtlens.training.evaluate.rollout` too; the data sample's summary and
  scatter against a direct ``collect_demonstrations`` call.
- patching: run on a tiny random 9-step model; every restored-fraction table is
  recomputed with ``activation_patching`` on one pair built here (``set_rtg`` for the
  RTG change, not ``rtg_pair``), baselines with ``logit_diff``, and the layer-0
  invariant (only S5 differs, so restoring it there restores exactly everything).
"""

from __future__ import annotations

import json
import math
import runpy
import sys
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from jaxtyping import Float
from torch import Tensor

import dtlens
from dtlens.analysis.edits.observations import set_rtg
from dtlens.analysis.edits.scenarios import instruction_swap_pair
from dtlens.analysis.metrics import logit_diff, make_logit_diff_metric
from dtlens.analysis.patching.activation import activation_patching
from dtlens.data.agents.planner import BoltzmannPlanner
from dtlens.data.collect import collect_demonstrations
from dtlens.env import ACTION_INDEX, MEMORY_ENV_ID, SCENARIOS, optimal_actions
from dtlens.model import HookedDecisionTransformer, TrajectoryBatch
from dtlens.report import SECTIONS
from dtlens.report.config import ReportConfig
from dtlens.report.sections import calibration, patching
from dtlens.training.evaluate import rollout
from dtlens.training.recipe import MEMORYDT_RECIPE
from tests.conftest import build_config, build_model

ROOT = Path(__file__).resolve().parents[2]
TOL = 1.5e-4  # the sections round to 4 decimals
Z95 = 1.959963984540054
MAX_STEPS = 12
CAL = ReportConfig(rtgs=(0.0, 0.5, 0.9), calibration_episodes=8, max_steps=MAX_STEPS)
ROUTE = [int(a) for a in optimal_actions("key", "key")]  # forward x4, left, forward


pytestmark = pytest.mark.usefixtures("one_thread")


def _numbers(value, where: str = ""):
    """Every number in a JSON value, with its path."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _numbers(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _numbers(item, f"{where}[{index}]")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield where, value


def test_registered_in_order():
    assert SECTIONS[0] == "calibration"
    assert SECTIONS.index("patching") == SECTIONS.index("congruence") + 1
    assert SECTIONS.index("patching") < SECTIONS.index("path_patching")


# ----------------------------------------------------------------------- calibration
class RouteModel(HookedDecisionTransformer):
    """Greedy policy known in advance: the key/top-key route (left turn) at RTG >= 0.5,
    ``done`` (which changes nothing) below; read only from timesteps and RTG tokens."""

    def action_logits(self, batch: TrajectoryBatch) -> Float[Tensor, "batch step action"]:
        step = batch.timesteps.clamp(max=len(ROUTE) - 1)
        planned = torch.tensor(ROUTE)[step]
        action = torch.where(batch.rtg >= 0.5, planned, ACTION_INDEX["done"])
        return torch.nn.functional.one_hot(action, self.cfg.n_actions).float()


@pytest.fixture(scope="module")
def route_model():
    return RouteModel(build_config(n_ctx=26)).eval()


@pytest.fixture(scope="module")
def cal_section(route_model):
    return calibration.run(route_model, CAL)


def _wilson(k: int, n: int) -> tuple[float, float]:
    p, z2 = k / n, Z95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def test_calibration_numbers_match_the_known_policy(cal_section):
    n = cal_section.numbers
    assert n["rtgs"] == [0.0, 0.5, 0.9] and n["episodes_per_rtg"] == 8
    win = 1 - 0.9 * len(ROUTE) / MAX_STEPS  # MiniGrid's reward after len(ROUTE) steps
    # the left-turn route wins where the matching target is on top: key/top-key, ball/top-ball
    rewards = np.array([win if j % 4 in (0, 3) else 0.0 for j in range(8)])
    half = Z95 * rewards.std(ddof=1) / math.sqrt(8)
    expected_high = {
        "rtg": 0.9,
        "success_rate": 0.5,
        "success_ci95": list(_wilson(4, 8)),
        "mean_reward": rewards.mean(),
        "reward_ci95": [rewards.mean() - half, rewards.mean() + half],
        "mean_length": len(ROUTE),
    }
    # the policy plays the same route at RTG 0.5 and 0.9
    for row in (n["at_high_rtg"], n["per_rtg"][2], {**n["per_rtg"][1], "rtg": 0.9}):
        for key, value in expected_high.items():
            assert row[key] == pytest.approx(value, abs=TOL), key
    low = n["at_low_rtg"]
    assert low == n["per_rtg"][0]
    assert (low["rtg"], low["success_rate"], low["mean_reward"]) == (0.0, 0.0, 0.0)
    assert low["mean_length"] == MAX_STEPS  # "done" until truncation
    assert low["success_ci95"] == pytest.approx(list(_wilson(0, 8)), abs=TOL)
    assert n["success_by_layout"] == {
        "key/top-key": [0.0, 1.0, 1.0],
        "key/top-ball": [0.0, 0.0, 0.0],
        "ball/top-key": [0.0, 0.0, 0.0],
        "ball/top-ball": [0.0, 1.0, 1.0],
    }
    assert n["distinct_outcomes_per_rtg"] == [4, 4, 4]  # greedy: one episode per layout
    gaps = [0.0, abs(rewards.mean() - 0.5), abs(rewards.mean() - 0.9)]
    assert n["mean_abs_reward_minus_rtg"] == pytest.approx(np.mean(gaps), abs=TOL)


def test_calibration_high_rtg_equals_a_separate_rollout(route_model, cal_section):
    alone = rollout(
        route_model,
        initial_rtg=0.9,
        seeds=np.arange(8),
        layouts=[SCENARIOS[j % 4] for j in range(8)],
        max_steps=MAX_STEPS,
    )
    high = cal_section.numbers["at_high_rtg"]
    assert high["success_rate"] == pytest.approx(alone.success.mean(), abs=TOL)
    assert high["mean_reward"] == pytest.approx(alone.rewards.mean(), abs=TOL)
    assert high["mean_length"] == pytest.approx(alone.lengths.mean(), abs=TOL)


def test_calibration_data_sample_equals_direct_collection(cal_section):
    scale = MEMORYDT_RECIPE.planner_scale
    demos = collect_demonstrations(
        BoltzmannPlanner(logit_scale=scale),
        MEMORY_ENV_ID,
        ["1:100", "5:200"],  # the seed's 1/3 at temperature 1, 2/3 at temperature 5
        max_steps=MAX_STEPS,
        seed=CAL.seed,
        show_progress=False,
    )
    data = cal_section.numbers["data"]
    outcomes = demos.outcomes()
    returns = demos.episode_returns
    assert data["n_episodes"] == 300 and data["planner_scale"] == scale
    for name in ("success", "failure", "truncated"):
        assert data["outcome_fractions"][name] == pytest.approx(np.mean(outcomes == name), abs=TOL)
    assert data["best_return"] == pytest.approx(returns.max(), abs=TOL)
    assert data["mean_return"] == pytest.approx(returns.mean(), abs=TOL)
    hot = outcomes[:100] == "success"
    assert cal_section.numbers["data_by_group"]["temperature=1"]["success"] == pytest.approx(
        hot.mean(), abs=TOL
    )
    # the scatter holds every episode: successes at their (length, return)
    scatter = cal_section.figures[1]
    won = next(t for t in scatter.data if t.type == "scatter" and t.name == "succeeded")
    ok = outcomes == "success"
    got = np.array(sorted(zip(won.x, won.y, strict=True)))
    want = np.array(sorted(zip(demos.episode_lengths[ok], returns[ok], strict=True)))
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_calibration_figure_and_text(cal_section):
    curve = cal_section.figures[0]
    assert isinstance(curve, go.Figure)
    mean = next(t for t in curve.data if t.name == "mean reward")
    expected = [r["mean_reward"] for r in cal_section.numbers["per_rtg"]]
    assert list(mean.y) == pytest.approx(expected, abs=TOL)
    assert "At RTG 0.9: success 50%" in cal_section.this_model
    assert all(math.isfinite(v) for _, v in _numbers(cal_section.to_json()["numbers"]))


# -------------------------------------------------------------------------- patching
@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(n_ctx=26)  # 9 steps, like MemoryDT


@pytest.fixture(scope="module")
def patch_section(model):
    return patching.run(model, ReportConfig())


def _direct(model, clean: TrajectoryBatch, corrupt: TrajectoryBatch, hook: str):
    by = ("layer", "head") if hook == "z" else ("layer", "pos")
    metric = make_logit_diff_metric("left", "right")
    result = activation_patching(model, clean, corrupt, metric, hook, by, show_progress=False)
    return result.values


def _close(table: list, values: Tensor) -> bool:
    got = torch.tensor(table)
    scale = 1e-4 * values.abs().max().clamp(min=1.0)  # batching changes the last float bits
    return got.shape == values.shape and bool(((got - values).abs() <= TOL + scale).all())


@pytest.mark.parametrize("rtg", [0.9, 0.0])
@pytest.mark.parametrize("layout", [s.name for s in SCENARIOS])
def test_instruction_swap_tables_equal_direct_patching(model, patch_section, layout, rtg):
    pair = instruction_swap_pair(layout, n_steps=9, rtg=rtg, padding="mask")
    tables = patch_section.numbers["instruction_swap_tables"][f"{layout} @ RTG {rtg:g}"]
    for hook in ("resid_pre", "z", "mlp_out"):
        assert _close(tables[hook], _direct(model, pair.clean, pair.corrupt, hook)), hook
    row = next(
        r
        for r in patch_section.numbers["instruction_swap_pairs"]
        if (r["layout"], r["rtg"]) == (layout, rtg)
    )
    with torch.no_grad():
        clean = logit_diff(model(pair.clean), "left", "right")
        corrupt = logit_diff(model(pair.corrupt), "left", "right")
    assert row["clean_logit_diff"] == pytest.approx(float(clean), abs=TOL)
    assert row["corrupt_logit_diff"] == pytest.approx(float(corrupt), abs=TOL)
    resid = torch.tensor(tables["resid_pre"])
    labels = patch_section.numbers["labels"]
    assert row["peak_by_layer"] == [labels[int(i)] for i in resid.argmax(-1)]


def test_layer0_restoration_is_all_at_the_instruction(patch_section):
    """Only S5's observation differs, so at layer 0 S5 restores 1 and every other token 0."""
    n = patch_section.numbers
    assert (n["instruction_token"], n["final_token"]) == ("S5", "S9")
    s5 = n["labels"].index("S5")
    for table in n["instruction_swap_tables"].values():
        layer0 = torch.tensor(table["resid_pre"][0])
        assert layer0[s5] == pytest.approx(1.0, abs=1e-3)
        assert layer0[torch.arange(26) != s5].abs().max() < 1e-3


@pytest.mark.parametrize("layout", [s.name for s in SCENARIOS])
def test_rtg_change_tables_equal_direct_patching(model, patch_section, layout):
    trajectory = instruction_swap_pair(layout, n_steps=9, rtg=0.9, padding="mask").clean
    clean, corrupt = set_rtg(trajectory, 0.0), set_rtg(trajectory, 0.9)
    tables = patch_section.numbers["rtg_change_tables"][layout]
    for hook in ("resid_pre", "mlp_out"):
        assert _close(tables[hook], _direct(model, clean, corrupt, hook)), hook
    row = next(r for r in patch_section.numbers["rtg_change_pairs"] if r["layout"] == layout)
    with torch.no_grad():
        assert row["clean_logit_diff"] == pytest.approx(
            float(logit_diff(model(clean), "left", "right")), abs=TOL
        )


def test_means_average_the_layouts(patch_section):
    n = patch_section.numbers
    s9 = n["labels"].index("S9")
    for rtg in (0.9, 0.0):
        tables = [n["instruction_swap_tables"][f"{s.name} @ RTG {rtg:g}"] for s in SCENARIOS]
        mean = torch.tensor([t["resid_pre"] for t in tables]).mean(0)
        summary = n["instruction_swap_mean"][f"RTG {rtg:g}"]
        assert summary["at_final_by_layer"] == pytest.approx(mean[:, s9].tolist(), abs=1e-3)
        mlp = torch.tensor([t["mlp_out"] for t in tables]).mean(0)
        assert summary["mlp_at_final_by_layer"] == pytest.approx(mlp[:, s9].tolist(), abs=1e-3)
    rtg_mlp = torch.tensor([t["mlp_out"] for t in n["rtg_change_tables"].values()]).mean(0)
    assert n["rtg_change_mean"]["mlp_at_final_by_layer"] == pytest.approx(
        rtg_mlp[:, s9].tolist(), abs=1e-3
    )


def _shown(table: list, labels: list[str], columns) -> list:
    """The table's columns under the heatmap's x labels."""
    keep = [labels.index(c) for c in columns]
    return torch.tensor(table)[:, keep].tolist()


def test_patching_figures_hold_the_tables(patch_section):
    n = patch_section.numbers
    labels = n["labels"]
    figures = patch_section.figures
    assert len(figures) == 5
    swap_heatmaps = [t for t in figures[0].data if t.type == "heatmap"]
    names = [f"{s.name} @ RTG {rtg:g}" for rtg in (0.9, 0.0) for s in SCENARIOS]
    assert len(swap_heatmaps) == 8
    # before S5 nothing differs: R1..R5 restore exactly 0, are left out and named
    assert list(swap_heatmaps[0].x) == labels[labels.index("S5") :]
    assert "R1–R5 restore nothing in any pair" in figures[0].layout.title.text
    for trace, name in zip(swap_heatmaps, names, strict=True):
        table = n["instruction_swap_tables"][name]["resid_pre"]
        assert torch.tensor(table)[:, : labels.index("S5")].abs().max() < 1e-6
        assert _close(_shown(table, labels, trace.x), torch.tensor(trace.z))
    heads = [t for t in figures[1].data if t.type == "heatmap"]
    assert _close(n["instruction_swap_tables"][names[0]]["z"], torch.tensor(heads[0].z))
    rtg_heatmaps = [t for t in figures[3].data if t.type == "heatmap"]
    assert len(rtg_heatmaps) == 4
    first = n["rtg_change_tables"][SCENARIOS[0].name]["resid_pre"]
    assert _close(_shown(first, labels, rtg_heatmaps[0].x), torch.tensor(rtg_heatmaps[0].z))
    assert all(math.isfinite(v) for _, v in _numbers(patch_section.to_json()["numbers"]))
    assert "S5" in patch_section.this_model and "MLP1" in patch_section.this_model


def test_patching_script_writes_the_section(model, patch_section, tmp_path, monkeypatch):
    model_dir = tmp_path / "model"
    dtlens.save(model, model_dir)
    out = tmp_path / "out"
    argv = ["analyses/patching.py", "--model", str(model_dir), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(ROOT / "analyses" / "patching.py"), run_name="__main__")
    assert stop.value.code == 0
    written = json.loads((out / "patching.json").read_text())
    assert written["numbers"] == json.loads(json.dumps(patch_section.to_json()["numbers"]))
    assert (out / "patching_0.html").exists()


def test_calibration_script_help(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["analyses/calibration.py", "--help"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(ROOT / "analyses" / "calibration.py"), run_name="__main__")
    assert stop.value.code == 0
    assert "calibrated only as far as its training data" in capsys.readouterr().out


def test_caveat_leads_exactly_when_no_swap_moves_the_decision(patch_section):
    """The warning depends only on the largest |clean - corrupt| gap (hand values), and
    the section's text carries it iff its own pairs are all under the threshold."""
    assert patching.instruction_blind_caveat([0.01, -0.2], "S5", "S9").startswith(
        "The instruction swap moves the decision at S9 by at most 0.200 logits"
    )
    assert patching.instruction_blind_caveat([0.01, -0.6], "S5", "S9") == ""
    assert patching.instruction_blind_caveat([], "S5", "S9") != ""
    pairs = patch_section.numbers["instruction_swap_pairs"]
    largest = max(abs(r["clean_logit_diff"] - r["corrupt_logit_diff"]) for r in pairs)
    leads = patch_section.this_model.startswith("The instruction swap moves the decision")
    assert leads == (largest < patch_section.numbers["min_gap"])
