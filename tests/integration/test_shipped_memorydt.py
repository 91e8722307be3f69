"""The shipped MemoryDT (dtlens/pretrained/memorydt): loads, plays, remembers, as stated.

Fast: it loads under its name with the recipe's architecture, walks the optimal route
in every layout at RTG 0.9 and reaches no target at RTG 0 (unpadded and mask-padded,
in a plain rollout loop written here), acts the same on both paddings, its stored
calibration meets the requirement in every layout, the instruction swap flips its
decision in every layout, residual patching restores the decision at the first state
and at the decision state, and its dynamics.json shows the plateau and the escape.
Slow (``-m slow``): the whole calibration table is recomputed and must equal the
stored per-episode results.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import dtlens
from dtlens.analysis.edits.scenarios import instruction_swap_pair
from dtlens.analysis.patching.activation import activation_patching
from dtlens.env import MEMORY_ENV_ID, SCENARIOS, encode_observation, make_env, optimal_actions
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.checkpoint import WEIGHTS_FILE
from dtlens.training.calibration import CalibrationResult, calibration_curve
from dtlens.training.dynamics import DYNAMICS_FILE, Dynamics
from dtlens.training.evaluate import rollout

SHIPPED = Path(dtlens.__file__).resolve().parent / "pretrained" / "memorydt"
pytestmark = pytest.mark.skipif(
    not (SHIPPED / WEIGHTS_FILE).exists(),
    reason=f"the shipped MemoryDT is not built ({SHIPPED}); run `dtlens build-memorydt`",
)


@pytest.fixture(scope="module")
def model():
    return dtlens.load("memorydt")


@pytest.fixture(scope="module")
def stored() -> CalibrationResult:
    return CalibrationResult.from_json((SHIPPED / "calibration.json").read_text())


def test_loads_with_the_recipe_architecture(model):
    cfg = model.cfg
    # the original project's working Memory DT shape (the model card says why)
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp, cfg.n_ctx) == (
        2,
        128,
        4,
        32,
        256,
        26,
    )
    assert (cfg.act_fn, cfg.gated_mlp, cfg.normalization, cfg.n_timesteps, cfg.max_timestep) == (
        "relu",
        True,
        "LN",
        9,
        50,
    )
    assert not model.training


def _play(model, scenario, rtg, padded):
    """Greedy play in a plain loop: the window of the last 9 steps, left-padded with the
    mask to 9 steps when ``padded``; returns (actions, reward)."""
    env = make_env(MEMORY_ENV_ID, max_steps=50, one_hot=False)
    obs, _ = env.reset(seed=0, options=scenario.options)
    images, actions, reward = [obs["image"]], [], 0.0
    for t in range(50):
        lo = max(0, t + 1 - 9)
        batch = TrajectoryBatch(
            obs=encode_observation(torch.as_tensor(np.stack(images[lo:])))[None],
            actions=torch.tensor(actions[lo:], dtype=torch.long).reshape(1, -1),
            rtg=torch.full((1, t + 1 - lo), rtg),
            timesteps=torch.arange(lo, t + 1)[None],
        )
        if padded:
            batch = batch.left_pad(9, pad_action=7)
        with torch.no_grad():
            action = int(model(batch)[0, -1].argmax())
        obs, r, terminated, truncated, _ = env.step(action)
        reward += r
        actions.append(action)
        if terminated or truncated:
            break
        images.append(obs["image"])
    return tuple(actions), reward


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "mask-padded"])
def test_walks_the_optimal_route_in_every_layout_at_rtg_09(model, padded):
    for scenario in SCENARIOS:
        actions, reward = _play(model, scenario, 0.9, padded)
        optimal = tuple(int(a) for a in optimal_actions(scenario.instruction, scenario.top))
        assert actions == optimal, scenario.name
        assert reward == pytest.approx(0.892)


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "mask-padded"])
def test_reaches_no_target_at_rtg_0(model, padded):
    for scenario in SCENARIOS:
        _, reward = _play(model, scenario, 0.0, padded)
        assert reward == 0.0, scenario.name


def test_unpadded_and_mask_padded_contexts_act_alike(model):
    kwargs = dict(
        initial_rtg=[0.0, 0.5, 0.9] * 4, seeds=list(range(12)), layouts="balanced", temperature=1.0
    )
    unpadded = rollout(model, padding="none", **kwargs)
    padded = rollout(model, padding="masked", **kwargs)
    assert padded.actions == unpadded.actions


def test_stored_calibration_meets_the_requirement(stored):
    assert stored.n_episodes >= 500
    assert stored.settings["temperature"] == 0.0 and stored.settings["layouts"] == "balanced"
    at_high = stored.at(0.9)
    for j, scenario in enumerate(SCENARIOS):
        assert stored.success[at_high, j::4].mean() >= 0.95, scenario.name
    assert stored.success_rate[stored.at(0.0)] <= 0.15
    card = (SHIPPED / "MODEL_CARD.md").read_text()
    assert "dtlens build-memorydt --out dtlens/pretrained/memorydt" in card
    assert "NOT met" not in card
    config = json.loads((SHIPPED / "config.json").read_text())
    assert config["metadata"]["calibration"]["passed"] is True
    assert config["metadata"]["calibration"]["masked_padding"]["passed"] is True


def test_instruction_swap_flips_the_decision_in_every_layout(model):
    for scenario in SCENARIOS:
        pair = instruction_swap_pair(scenario, rtg=0.9, padding=model.context_padding)
        with torch.no_grad():
            clean, corrupt = model(pair.clean)[0, -1], model(pair.corrupt)[0, -1]
        a, w = pair.answer_action, pair.wrong_action
        assert clean[a] - clean[w] >= 1.0, scenario.name  # the correct turn
        assert corrupt[w] - corrupt[a] >= 1.0, scenario.name  # flipped by the swap


def _sweep(model, pair, hook, by):
    return activation_patching(
        model, pair.clean, pair.corrupt, pair.metric(model), hook, by=by, show_progress=False
    )


def test_residual_patching_restores_at_the_first_state_and_the_decision_state(model):
    # denoising the residual stream at the first real state (S5: the only observation that
    # shows the instruction) before layer 0, and at the decision state (S9) after the last
    # layer, restores the clean decision (left - right logit difference, restored fraction)
    last = model.cfg.n_layers - 1
    for scenario in SCENARIOS:
        pair = instruction_swap_pair(scenario, rtg=0.9, padding=model.context_padding)
        pre = _sweep(model, pair, "resid_pre", ("layer", "pos"))
        post = _sweep(model, pair, "resid_post", ("layer", "pos"))
        labels = pre.labels["pos"]
        assert pre.values[0, labels.index("S5")] >= 0.8, scenario.name
        assert post.values[last, labels.index("S9")] >= 0.8, scenario.name


def test_last_layer_heads_carry_the_instruction_to_the_decision_state(model):
    # this model moves the instruction into the decision state in its last layer: before
    # it, no single position of S9's residual restores anything, and the last layer's heads
    # at S9 do (the model card and the report's patching section show the route)
    last = model.cfg.n_layers - 1
    for scenario in SCENARIOS:
        pair = instruction_swap_pair(scenario, rtg=0.9, padding=model.context_padding)
        pre = _sweep(model, pair, "resid_pre", ("layer", "pos"))
        heads = _sweep(model, pair, "z", ("layer", "pos", "head"))
        s9 = pre.labels["pos"].index("S9")
        assert abs(float(pre.values[last, s9])) < 0.1, scenario.name
        assert float(heads.values[last, s9].max()) >= 0.5, scenario.name


def test_dynamics_record_the_plateau_and_the_escape():
    dynamics = Dynamics.load(SHIPPED / DYNAMICS_FILE)
    assert len(dynamics.steps) >= 12 and dynamics.steps[0] == 0
    success = dynamics.measures["success@0.9"]
    assert success[0] <= 0.5 and success[-1] >= 0.95
    assert dynamics.measures["decision_loss"][-1] < 0.2
    assert dynamics.story()["plateau_broke_at"] is not None


@pytest.mark.slow
def test_calibration_recomputes_exactly(model, stored):
    s = stored.settings
    again = calibration_curve(
        model,
        rtgs=stored.rtgs,
        episodes_per_rtg=stored.n_episodes,
        env_id=s["env_id"],
        temperature=s["temperature"],
        max_steps=s["max_steps"],
        seed=s["seed"],
        layouts=s["layouts"],
        padding=s["padding"],
    )
    assert np.array_equal(again.success, stored.success)
    assert np.array_equal(again.lengths, stored.lengths)
    np.testing.assert_allclose(again.rewards, stored.rewards, atol=1e-6)
    assert torch.equal(torch.as_tensor(again.rtgs), torch.as_tensor(stored.rtgs))
