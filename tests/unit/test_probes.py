"""Linear probes: the fit against planted and absent directions, the Wilson interval by
hand, the windows against the env and ``layout_batch``, and the baselines."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from dtlens.analysis.edits.scenarios import layout_batch
from dtlens.analysis.probes import (
    ProbeData,
    fit_probe,
    linear_probes,
    memory_windows,
    probe_activations,
    random_model,
    residual_hooks,
    rollout_windows,
    steps_to_decision,
    token_position,
    wilson_interval,
)
from dtlens.data.decision import decision_views, start_views
from dtlens.env import encode_observation
from dtlens.errors import ConfigError, HookNameError
from dtlens.training.evaluate import rollout
from tests.conftest import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _synthetic(planted: bool, n: int = 600, d: int = 24, seed: int = 0):
    g = np.random.default_rng(seed)
    labels = g.integers(0, 2, n)
    features = g.normal(size=(n, d))
    axis = g.normal(size=d)
    axis /= np.linalg.norm(axis)
    if planted:
        features += 3.0 * np.outer(2 * labels - 1, axis)
    return features, labels, axis


# ------------------------------------------------------------------------ the fit
def test_a_planted_direction_is_recovered():
    features, labels, axis = _synthetic(planted=True)
    fit = fit_probe(features, labels, seed=0)
    assert fit.accuracy >= 0.97 and fit.n_test == 180 and fit.n_train == 420
    assert fit.ci[0] > 0.9
    # the probe's normal (in activation space) points along the planted axis, to label 1
    assert float(fit.direction @ axis) > 0.9


def test_without_a_direction_the_probe_is_at_chance_within_its_interval():
    features, labels, _ = _synthetic(planted=False)
    fit = fit_probe(features, labels, seed=0)
    assert fit.ci[0] <= fit.chance <= fit.ci[1] or fit.ci[0] <= 0.5 <= fit.ci[1]
    assert abs(fit.accuracy - 0.5) < 0.12


def test_the_shuffled_label_baseline_sits_at_chance_even_with_a_direction():
    features, labels, _ = _synthetic(planted=True)
    for seed in range(3):
        fit = fit_probe(features, labels, seed=seed, shuffle_labels=True)
        assert fit.shuffled and fit.ci[0] <= 0.5 <= fit.ci[1], (seed, fit.accuracy)


def test_the_split_is_seeded_and_stratified():
    features, labels, _ = _synthetic(planted=True)
    a, b = fit_probe(features, labels, seed=3), fit_probe(features, labels, seed=3)
    assert a.accuracy == b.accuracy and np.array_equal(a.weights, b.weights)
    # stratified: the held-out rows keep the label shares
    assert abs(a.chance - max(labels.mean(), 1 - labels.mean())) < 0.02


def test_multiclass_probes_and_their_weights():
    g = np.random.default_rng(1)
    labels = g.integers(0, 4, 400)
    features = g.normal(size=(400, 6)) + 4.0 * np.eye(6)[labels]
    fit = fit_probe(torch.tensor(features), torch.tensor(labels))
    assert fit.accuracy > 0.9 and fit.classes == (0, 1, 2, 3) and fit.weights.shape == (4, 6)
    # weights in activation space: the raw features through them give the same predictions
    raw = features @ fit.weights.T + fit.intercept
    from sklearn.model_selection import train_test_split

    _, x_test, _, y_test = train_test_split(
        features, labels, test_size=0.3, random_state=0, stratify=labels
    )
    predicted = (x_test @ fit.weights.T + fit.intercept).argmax(1)
    assert (predicted == y_test).mean() == pytest.approx(fit.accuracy)
    assert raw.shape == (400, 4)
    with pytest.raises(ConfigError, match="single direction"):
        _ = fit.direction


def test_fit_probe_refuses_what_it_cannot_fit():
    with pytest.raises(ConfigError, match="two distinct labels"):
        fit_probe(np.zeros((10, 2)), np.zeros(10))
    with pytest.raises(ConfigError, match="rows"):
        fit_probe(np.zeros((10, 2)), np.zeros(9))
    with pytest.raises(ConfigError, match="test_fraction"):
        fit_probe(np.zeros((10, 2)), np.arange(10) % 2, test_fraction=1.0)


# ------------------------------------------------------------ the Wilson interval
def test_wilson_interval_against_a_hand_computation():
    # 9 of 10, z = 1.96: centre (0.9 + 1.96^2/20) / (1 + 1.96^2/10) = 0.7890,
    # half-width 1.96 / 1.3842 * sqrt(0.009 + 1.96^2/400) = 0.1931
    z = 1.959963984540054
    p, n = 0.9, 10
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = wilson_interval(9, 10)
    assert (low, high) == pytest.approx((centre - half, centre + half), abs=1e-12)
    assert (low, high) == pytest.approx((0.5958, 0.9821), abs=1e-4)
    # at the ends the interval is exact: 0 successes -> lower 0, all -> upper 1
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0
    assert wilson_interval(20, 20)[0] == pytest.approx(20 / (20 + z * z), abs=1e-12)
    with pytest.raises(ConfigError):
        wilson_interval(3, 0)


# -------------------------------------------------------------------- the windows
@pytest.fixture(scope="module")
def model():
    return build_model(n_ctx=26)  # 9 steps, like MemoryDT


def test_decision_windows_end_on_the_decision_square_and_hold_the_instruction(model):
    data = memory_windows(model, n_routes=24, rtg=0.9, seed=0)
    assert len(data) == 24 and data.batch.n_steps == 9
    views, starts = decision_views(), start_views()
    for i, name in enumerate(data.layouts):
        instruction, top = name.split("/top-")
        assert data.labels["instruction"][i] == ("key", "ball").index(instruction)
        target = "top" if instruction == top else "bottom"
        assert data.labels["target_side"][i] == ("top", "bottom").index(target)
        real = data.batch.padding_mask[i] if data.batch.padding_mask is not None else None
        obs = data.batch.obs[i] if real is None else data.batch.obs[i][real]
        assert torch.equal(obs[-1], encode_observation(torch.as_tensor(views[top])))
        assert torch.equal(obs[0], encode_observation(torch.as_tensor(starts[(instruction, top)])))
    assert (data.labels["steps_to_decision"] == 0).all()
    assert (data.labels["rtg_bucket"] == 0).all() and np.allclose(data.rtg, 0.9)


def test_a_window_equals_layout_batch_of_its_route(model):
    """The route of each window is read back from its actions; ``layout_batch`` (an
    independent builder) must give the very same window."""
    data = memory_windows(model, n_routes=12, rtg=0.7, seed=5)
    mask = data.batch.padding_mask
    for i, name in enumerate(data.layouts):
        real = mask[i] if mask is not None else torch.ones(9, dtype=torch.bool)
        route = data.batch.actions[i][real[:-1]].tolist()
        expected = layout_batch(name, route, rtg=0.7, n_steps=9, padding="mask")
        got = data.batch[i]
        assert torch.equal(got.obs[:, real], expected.obs[:, -int(real.sum()) :])
        assert torch.equal(got.timesteps[:, real], expected.timesteps[:, -int(real.sum()) :])
        assert torch.allclose(got.rtg[:, real], expected.rtg[:, -int(real.sum()) :])
        logits = model(got)[:, -1]
        torch.testing.assert_close(logits, model(expected)[:, -1], rtol=1e-5, atol=1e-5)


def test_rtg_buckets_split_the_range_evenly(model):
    data = memory_windows(model, n_routes=80, rtg=(0.0, 0.8), seed=1, n_rtg_buckets=4)
    assert data.rtg_edges == pytest.approx((0.2, 0.4, 0.6))
    assert (data.labels["rtg_bucket"] == np.floor(data.rtg / 0.2).clip(0, 3)).all()
    assert data.rtg.min() >= 0.0 and data.rtg.max() <= 0.8


def test_steps_to_decision_by_hand():
    # start facing east: 4 forwards; facing west at the start: 2 turns + 4 forwards
    assert steps_to_decision((1, 3, 0)) == 4 and steps_to_decision((1, 3, 2)) == 6
    assert steps_to_decision((4, 3, 2)) == 3  # turn twice, one forward
    assert steps_to_decision((3, 3, 3)) == 3  # facing north: turn right, two forwards
    assert steps_to_decision((2, 2, 0)) == 6  # forward, right, forward, left, 2 forwards
    assert all(steps_to_decision((5, 3, d)) == 0 for d in range(4))
    assert steps_to_decision((5, 2, 0)) == -1  # the square next to a target ends the episode


def test_all_step_windows_count_down_along_the_corridor(model):
    data = memory_windows(model, n_routes=8, rtg=0.9, seed=2, at="all")
    steps = data.labels["steps_to_decision"]
    assert set(steps.tolist()) >= {0, 1, 2, 3, 4}
    # the first window of each route (timestep 0 last) is at the start: 4 steps away
    first = data.batch.timesteps[:, -1] == 0
    assert (steps[first.numpy()] == 4).all() and int(first.sum()) == 8


def test_rollout_windows_are_the_rollouts_steps(model):
    data = rollout_windows(model, n_episodes=8, rtg=0.5, seed=3, at="all", temperature=1.0)
    result = rollout(
        model, initial_rtg=0.5, seeds=3, n_episodes=8, layouts="balanced", temperature=1.0,
        max_steps=9, record=True,
    )  # fmt: skip
    expected = sum(
        len(images) - (1 if terminated else 0)
        for images, terminated in zip(result.images, result.terminated, strict=True)
    )
    assert len(data) == expected
    assert data.layouts[0] == result.layouts[0]
    assert (data.labels["instruction"] == [("key", "ball").index(n.split("/")[0])
                                           for n in data.layouts]).all()  # fmt: skip


def test_probe_data_checks_its_sizes(model):
    data = memory_windows(model, n_routes=4, seed=0)
    with pytest.raises(ConfigError, match="labels"):
        ProbeData(data.batch, {"instruction": np.zeros(3, dtype=int)}, data.rtg, data.layouts)
    assert len(data.subset([0, 2])) == 2
    assert len(data.subset(data.labels["instruction"] == 1)) == 2


# ------------------------------------------------------------- probes by layer
def test_probe_activations_read_the_chosen_token(model):
    data = memory_windows(model, n_routes=8, seed=0)
    hooks = ["blocks.0.hook_resid_post", "hook_rtg_embed"]
    acts = probe_activations(model, data, ["blocks.0.hook_resid_post"], token="R")
    _, cache = model.run_with_cache(data.batch)
    n = data.batch.n_tokens(3)
    assert token_position(model, n, "R") == n - 2 and token_position(model, n, -1) == n - 1
    torch.testing.assert_close(acts[hooks[0]], cache[hooks[0]][:, n - 2])
    with pytest.raises(HookNameError):
        probe_activations(model, data, ["blocks.9.hook_resid_post"])
    with pytest.raises(ConfigError):
        token_position(model, n, "Q")


def test_linear_probes_have_both_baselines(model):
    data = memory_windows(model, n_routes=400, rtg=(0.0, 1.0), seed=0)
    result = linear_probes(model, data, "rtg_bucket", token="R", seed=0)
    assert result.hooks == tuple(residual_hooks(model))
    assert len(result.trained) == len(result.random_model) == len(result.shuffled) == 5
    # recomputed from the pieces: the random model is the model class at another seed
    baseline = random_model(model)
    assert baseline.cfg.seed != model.cfg.seed and type(baseline) is type(model)
    acts = probe_activations(baseline, data, token="R")
    for hook, fit in zip(result.hooks, result.random_model, strict=True):
        assert fit.accuracy == fit_probe(acts[hook], data.labels["rtg_bucket"], 0).accuracy
    for fit in result.shuffled:  # shuffled labels: chance lies in the interval
        assert fit.ci[0] <= fit.chance
    # the RTG token's embedding is linear in the RTG: its bucket is readable from the start
    assert result.accuracy_by_layer["blocks.0.hook_resid_pre"] > result.chance + 0.3
    d = result.to_dict()
    assert set(d["accuracy_by_layer"]) == set(result.hooks)
    fig = result.plot()
    assert [t.name for t in fig.data[:3]] == ["trained model", "random model", "shuffled labels"]
    with pytest.raises(ConfigError, match="not labelled"):
        linear_probes(model, data, "colour")
    # independent expectations. A balanced binary fact (the routes are spread evenly over
    # the layouts: 200 windows per instruction): shuffled labels score chance, 0.5.
    assert np.bincount(data.labels["instruction"]).tolist() == [200, 200]
    hooks = ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_post"]
    balanced = linear_probes(model, data, "instruction", hooks=hooks, token="S", seed=0)
    for fit in balanced.shuffled:
        assert fit.ci[0] <= 0.5 <= fit.ci[1]
    # a fact that is exactly a linear function of the features (a threshold on a fixed
    # projection of the RTG token's residual, read from a plain forward; the half of the
    # windows nearest the threshold left out, a margin for the L2-regularised fit): the
    # probe reads it perfectly
    assert model.token_labels(data.batch)[-2] == "R9"  # the last (9th) step's RTG token
    with torch.no_grad():
        _, cache = model.run_with_cache(data.batch)
    features = cache["blocks.0.hook_resid_pre"][:, -2].double()
    axis = torch.randn(features.shape[1], generator=torch.Generator().manual_seed(0)).double()
    projection = (features @ axis).numpy()
    gap = np.abs(projection - np.median(projection))
    keep = gap > np.median(gap)
    linear = (projection > np.median(projection)).astype(np.int64)
    sub = data.subset(keep)
    sub = dataclasses.replace(sub, labels={**sub.labels, "linear": linear[keep]})
    exact = linear_probes(model, sub, "linear", hooks=hooks[:1], token="R", seed=0)
    assert exact.trained[0].accuracy == 1.0
