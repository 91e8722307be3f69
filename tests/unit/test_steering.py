"""Steering: the hook adds exactly coef * direction where asked (checked against a hand
edit of the residual stream run through ``forward_from_layer``), coefficient 0 changes
no rollout, and the sweep's counts are the rollouts' outcomes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dtlens.analysis.probes import fit_probe, memory_windows, probe_activations
from dtlens.analysis.steering import (
    Steering,
    fact_directions,
    mean_difference,
    probe_direction,
    resolve_positions,
    steer,
    steering_sweep,
)
from dtlens.env import SCENARIOS
from dtlens.errors import BatchError, ConfigError, HookNameError
from dtlens.training.evaluate import rollout
from tests.conftest import build_batch, build_model

pytestmark = pytest.mark.usefixtures("one_thread")
HOOK = "blocks.1.hook_resid_pre"


@pytest.fixture(scope="module")
def model():
    return build_model(n_ctx=26)


def test_positions_by_hand():
    assert resolve_positions("all", 5).tolist() == [0, 1, 2, 3, 4]
    assert resolve_positions("last", 8).tolist() == [7]
    assert resolve_positions("states", 8).tolist() == [1, 4, 7]
    assert resolve_positions("rtgs", 8).tolist() == [0, 3, 6]
    assert resolve_positions("actions", 8).tolist() == [2, 5]
    assert resolve_positions("states", 6, kinds="SA").tolist() == [0, 2, 4]
    assert resolve_positions(-2, 8).tolist() == [6]
    assert resolve_positions([0, -1, 9, -9], 8).tolist() == [0, 7]  # out of range: skipped
    with pytest.raises(ConfigError):
        resolve_positions("middle", 8)
    with pytest.raises(ConfigError):
        resolve_positions("rtgs", 6, kinds="SA")


@pytest.mark.parametrize("positions", ["last", "states", [1, -4], "all"])
def test_the_hook_adds_exactly_coef_times_direction(model, positions):
    batch = build_batch(batch_size=3, n_steps=9, seed=1)
    direction = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0))
    coef = 2.5
    with torch.no_grad():
        _, cache = model.run_with_cache(batch)
        resid = cache[HOOK].clone()
        n = resid.shape[1]
        if positions == "last":
            chosen = [n - 1]
        elif positions == "states":
            chosen = list(range(1, n, 3))  # R S A R S A ...: states at 1, 4, 7, ...
        elif positions == "all":
            chosen = list(range(n))
        else:
            chosen = [1, n - 4]
        for p in chosen:
            resid[:, p] += coef * direction
        expected = model.forward_from_layer(resid, 1, batch)
        with steer(model, HOOK, direction, coef, positions):
            got = model(batch)
        plain = model(batch)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, plain)  # it did something
    with torch.no_grad():  # and nothing is left behind after the context
        torch.testing.assert_close(model(batch), plain)


def test_steering_a_masked_batch_and_a_per_head_hook(model):
    batch = build_batch(batch_size=2, n_steps=5, seed=2).left_pad(9, pad_action=7)
    z = torch.randn(model.cfg.n_heads, model.cfg.d_head)
    with torch.no_grad(), steer(model, "blocks.0.attn.hook_z", z, 1.0, "last"):
        _, cache = model.run_with_cache(batch, names_filter="blocks.0.attn.hook_z")
    with torch.no_grad():
        _, plain = model.run_with_cache(batch, names_filter="blocks.0.attn.hook_z")
    diff = cache["blocks.0.attn.hook_z"] - plain["blocks.0.attn.hook_z"]
    torch.testing.assert_close(diff[:, -1], z.expand(2, -1, -1))
    assert diff[:, :-1].abs().max() == 0


def test_coefficient_zero_leaves_rollouts_exactly_unchanged(model):
    kwargs = dict(initial_rtg=0.9, n_episodes=8, seeds=5, layouts="balanced",
                  temperature=1.0, max_steps=12, record=True)  # fmt: skip
    plain = rollout(model, **kwargs)
    direction = torch.randn(model.cfg.d_model)
    with steer(model, HOOK, direction, 0.0, "all"):
        steered = rollout(model, **kwargs)
    assert steered.actions == plain.actions
    for a, b in zip(steered.probs, plain.probs, strict=True):
        assert torch.equal(a, b)
    with steer(model, HOOK, 50 * direction, 1.0, "all"):
        pushed = rollout(model, **kwargs)
    assert any(not torch.equal(a, b) for a, b in zip(pushed.probs, plain.probs, strict=True))


def test_steer_checks_its_arguments(model):
    batch = build_batch(batch_size=1, n_steps=3)
    with pytest.raises(HookNameError), steer(model, "blocks.7.hook_resid_pre", torch.zeros(32)):
        pass
    no_grad = torch.no_grad()
    with (
        pytest.raises(BatchError, match="does not fit"),
        no_grad,
        steer(model, HOOK, torch.zeros(5)),
    ):
        model(batch)
    with pytest.raises(ConfigError, match="token axis"):
        Steering("blocks.0.attn.hook_pattern", torch.zeros(4))
    with pytest.raises(ConfigError, match="finite"):
        Steering(HOOK, torch.full((32,), float("nan")))
    with pytest.raises(ConfigError, match="needs a direction"), steer(model, HOOK):
        pass
    two = [Steering(HOOK, torch.ones(32), 1.0), Steering(HOOK, torch.ones(32), -1.0)]
    with torch.no_grad():
        plain = model(batch)
        with steer(model, two):  # +1 and -1: they cancel
            torch.testing.assert_close(model(batch), plain)


def test_directions_by_hand():
    acts = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0]])
    labels = [0, 0, 1, 1]
    assert mean_difference(acts, labels).tolist() == [-2.0, 3.0]
    with pytest.raises(ConfigError):
        mean_difference(acts, [1, 1, 1, 1])
    g = np.random.default_rng(0)
    y = g.integers(0, 2, 400)
    x = g.normal(size=(400, 8))
    x[:, 2] += 3.0 * y  # the classes differ along axis 2 only
    fit = fit_probe(x, y)
    v = probe_direction(fit, torch.tensor(x), y)
    gap = x[y == 1].mean(0) - x[y == 0].mean(0)
    u = fit.direction
    # scaled so that coefficient 1 moves by the class means' gap along the probe normal
    assert float(v @ torch.tensor(u, dtype=torch.float32)) == pytest.approx(u @ gap, rel=1e-5)
    assert abs(float(v[2])) / float(v.norm()) > 0.95


def test_fact_directions_are_differences_of_means_at_the_token(model):
    data = memory_windows(model, n_routes=16, seed=0)
    dirs = fact_directions(model, data, "instruction", [HOOK])
    acts = probe_activations(model, data, [HOOK])[HOOK]
    y = data.labels["instruction"]
    torch.testing.assert_close(dirs[HOOK], acts[y == 1].mean(0) - acts[y == 0].mean(0))
    with pytest.raises(ConfigError, match="labels 0 and 1"):
        fact_directions(model, data, "steps_to_decision", [HOOK])
    probe = fact_directions(model, data, "target_side", [HOOK], method="probe")
    assert probe[HOOK].shape == (model.cfg.d_model,)


def test_the_sweep_counts_the_rollouts_outcomes(model):
    direction = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(3))
    result = steering_sweep(
        model, {HOOK: direction}, "instruction", coefficients=(0.0, 3.0), rtgs=(0.9, 0.1),
        max_steps=10, every_cell=True,
    )  # fmt: skip
    assert result.outcomes.shape == (1, 2, 2, 3) and result.n_episodes == 4
    np.testing.assert_allclose(result.outcomes.sum(-1), 1.0)
    # coefficient 0 is the unsteered play
    np.testing.assert_allclose(result.outcomes[0, 0], result.unsteered)
    # one cell by hand: key layouts pushed by +3 d, ball layouts by -3 d
    other = 0
    for sign, instruction in ((1.0, "key"), (-1.0, "ball")):
        layouts = [s for s in SCENARIOS if s.instruction == instruction]
        with steer(model, HOOK, sign * direction, 3.0, "last"):
            r = rollout(model, initial_rtg=0.9, n_episodes=2, seeds=0, layouts=layouts,
                        max_steps=10)  # fmt: skip
        other += int((r.terminated & ~r.success).sum())
    assert result.retarget_rate[HOOK][3.0] == other / 4
    d = result.to_dict()
    assert d["retarget_rate"][HOOK]["3"] == pytest.approx(other / 4)
    assert set(d["success_at_rtg"]) == {"unsteered", "steered"}
    fig = result.plot()
    assert fig.data[0].z.shape == (1, 2)
    with pytest.raises(ConfigError, match="steering sweeps take"):
        steering_sweep(model, {HOOK: direction}, "rtg_bucket")


def test_the_sweep_plays_later_rtgs_only_where_it_retargets(model):
    direction = torch.zeros(model.cfg.d_model)  # retargets nothing
    result = steering_sweep(
        model, {HOOK: direction}, "target_side", (1.0, 2.0), max_steps=8, min_retarget=1.01
    )
    # only the best cell (ties: the smaller coefficient) is played at the low RTG
    assert np.isfinite(result.outcomes[0, 0, 1]).all()
    assert np.isnan(result.outcomes[0, 1, 1]).all()
    assert result.to_dict()["new_target_at_low_rtg"][HOOK]["2"] is None
