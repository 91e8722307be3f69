"""dtlens.plotting: each figure carries exactly the values and labels it was given.

Expectations are built independently of the plotting code: masks and orderings by
explicit loops, statistics by hand-written formulas, attention patterns recomputed
from the cached queries and keys.
"""

from __future__ import annotations

import json
import math
import statistics
from types import SimpleNamespace

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from dtlens.analysis.patching.results import PatchingResult
from dtlens.errors import BatchError, DTLensError, HookNameError, ObservationError
from dtlens.plotting import (
    attention_from_cache,
    plot_action_probabilities,
    plot_action_probability_grid,
    plot_attention,
    plot_attention_comparison,
    plot_attention_heads,
    plot_calibration,
    plot_congruence,
    plot_congruence_growth,
    plot_dla,
    plot_grid,
    plot_logit_lens,
    plot_patching,
    plot_reward_length_scatter,
)
from dtlens.plotting.maps import plot_action_maps
from dtlens.plotting.steering import plot_steering
from tests.conftest import build_batch, build_model

LABELS = ["R1", "S1", "A1", "R2", "S2"]
ACTIONS3 = ["left", "right", "forward"]


def _strict_json(fig: go.Figure) -> dict:
    """The figure's JSON as a browser parses it (NaN/Infinity are not JSON)."""

    def reject(constant: str) -> None:
        raise ValueError(f"non-JSON constant {constant} in figure")

    return json.loads(fig.to_json(), parse_constant=reject)


def _lower_triangle_expected(pattern: torch.Tensor) -> np.ndarray:
    """Pattern with NaN where key > query, built cell by cell."""
    n = pattern.shape[0]
    out = np.empty((n, n))
    for q in range(n):
        for k in range(n):
            out[q, k] = float(pattern[q, k]) if k <= q else math.nan
    return out


@pytest.fixture(scope="module")
def model_and_cache():
    model = build_model()
    batch = build_batch(batch_size=2, n_steps=4)
    _, cache = model.run_with_cache(batch)
    return model, batch, cache


# ---------------------------------------------------------------- attention


def test_plot_attention_masks_future_and_labels_axes():
    pattern = torch.rand(5, 5, generator=torch.Generator().manual_seed(0), requires_grad=True)
    fig = plot_attention(pattern, LABELS, title="L0H0")
    heat = fig.data[0]
    np.testing.assert_array_equal(np.asarray(heat.z), _lower_triangle_expected(pattern.detach()))
    assert list(heat.x) == LABELS and list(heat.y) == LABELS
    assert fig.layout.yaxis.autorange == "reversed"  # first query on top
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == (0.0, 1.0)
    assert fig.layout.title.text == "L0H0"
    assert pattern.grad is None  # plotting never touches the autograd graph


def test_attention_from_cache_matches_pattern_recomputed_from_q_and_k(model_and_cache):
    model, batch, cache = model_and_cache
    layer, head, row = 1, 2, 1
    q = cache[f"blocks.{layer}.attn.hook_q"][row, :, head]
    k = cache[f"blocks.{layer}.attn.hook_k"][row, :, head]
    scores = q @ k.T / math.sqrt(model.cfg.d_head)
    n = scores.shape[0]
    future = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
    expected = scores.masked_fill(future, float("-inf")).softmax(-1)

    pattern = attention_from_cache(cache, layer, head, batch_index=row)
    torch.testing.assert_close(pattern, expected)

    labels = model.token_labels(batch)
    fig = plot_attention(cache, labels, layer=layer, head=head, batch_index=row)
    np.testing.assert_allclose(
        np.asarray(fig.data[0].z), _lower_triangle_expected(expected), rtol=1e-5, atol=1e-7
    )
    assert list(fig.data[0].x) == labels
    assert fig.layout.title.text == f"L{layer}H{head}"


def test_attention_input_errors_name_the_shapes(model_and_cache):
    _, _, cache = model_and_cache
    with pytest.raises(HookNameError, match=r"blocks\.7\.attn\.hook_pattern"):
        attention_from_cache(cache, layer=7, head=0)
    with pytest.raises(BatchError, match=r"head 9 .*\[2, 4, 11, 11\]"):
        attention_from_cache(cache, layer=0, head=9)
    with pytest.raises(BatchError, match=r"batch_index 5 .*\[2, 4, 11, 11\]"):
        attention_from_cache(cache, layer=0, head=0, batch_index=5)
    with pytest.raises(BatchError, match=r"square.*\[3, 4\]"):
        plot_attention(torch.rand(3, 4))
    with pytest.raises(BatchError, match=r"4 labels .* size 5"):
        plot_attention(torch.rand(5, 5), LABELS[:4])
    with pytest.raises(BatchError, match="repeated"):
        plot_attention(torch.rand(2, 2), ["S1", "S1"])
    with pytest.raises(BatchError, match="layer= and head="):
        plot_attention(cache, layer=0)
    with pytest.raises(BatchError, match="select a pattern from a cache"):
        plot_attention(torch.rand(5, 5), LABELS, layer=0, head=0)
    with pytest.raises(BatchError, match=r"2 dimension\(s\), got shape \[2, 5, 5\]"):
        plot_attention(torch.rand(2, 5, 5))


def test_attention_comparison_shares_one_colour_scale():
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(5, 5, generator=g), 3 * torch.rand(5, 5, generator=g)
    fig = plot_attention_comparison(a, b, LABELS, titles=("RTG 0.0", "RTG 0.9"), zmax=None)
    assert len(fig.data) == 2
    np.testing.assert_array_equal(np.asarray(fig.data[0].z), _lower_triangle_expected(a))
    np.testing.assert_array_equal(np.asarray(fig.data[1].z), _lower_triangle_expected(b))
    assert [t.coloraxis for t in fig.data] == ["coloraxis", "coloraxis"]
    lower = torch.tril(torch.ones(5, 5, dtype=torch.bool))
    shown_max = max(float(a[lower].max()), float(b[lower].max()))
    assert fig.layout.coloraxis.cmin == 0.0
    assert fig.layout.coloraxis.cmax == pytest.approx(shown_max)
    assert [ann.text for ann in fig.layout.annotations] == ["RTG 0.0", "RTG 0.9"]
    assert fig.layout.yaxis.autorange == "reversed" and fig.layout.yaxis2.autorange == "reversed"
    with pytest.raises(BatchError, match=r"\[5, 5\] and \[4, 4\]"):
        plot_attention_comparison(a, torch.rand(4, 4), LABELS)


def test_attention_heads_grid_has_every_head(model_and_cache):
    model, batch, cache = model_and_cache
    patterns = cache["blocks.0.attn.hook_pattern"][0]  # [head, q, k]
    fig = plot_attention_heads(patterns, model.token_labels(batch), n_cols=3)
    assert len(fig.data) == model.cfg.n_heads
    for h, trace in enumerate(fig.data):
        np.testing.assert_allclose(np.asarray(trace.z), _lower_triangle_expected(patterns[h]))
        assert trace.coloraxis == "coloraxis"
    assert [ann.text for ann in fig.layout.annotations] == ["H0", "H1", "H2", "H3"]
    # 4 heads in 3 columns -> 2 rows: the 4th head sits in row 2, column 1
    assert fig.data[3].xaxis == "x4" and fig.layout.xaxis4.domain == fig.layout.xaxis.domain
    with pytest.raises(BatchError, match=r"head labels: got 2 labels"):
        plot_attention_heads(patterns, head_labels=["a", "b"])


# ---------------------------------------------------------------- patching


def _result(shape: tuple[int, ...], axes: tuple[str, ...]) -> PatchingResult:
    values = torch.linspace(-1.0, 2.0, math.prod(shape)).reshape(shape)
    names = {"layer": ["0", "1"], "pos": ["R1", "S1", "A1"], "head": ["H0", "H1", "H2", "H3"]}
    labels = {axis: names[axis][:size] for axis, size in zip(axes, shape, strict=True)}
    return PatchingResult(values, axes=axes, labels=labels, metric_name="restored logit diff")


def test_plot_patching_two_axes_is_a_heatmap_centred_at_zero():
    result = _result((2, 3), ("layer", "pos"))
    fig = plot_patching(result)
    heat = fig.data[0]
    assert heat.type == "heatmap"
    np.testing.assert_array_equal(np.asarray(heat.z), result.values.numpy())
    assert list(heat.y) == ["0", "1"] and list(heat.x) == ["R1", "S1", "A1"]
    assert heat.zmid == 0 and heat.colorbar.title.text == "restored logit diff"
    assert fig.layout.yaxis.autorange == "reversed"  # layer 0 on top
    assert fig.layout.yaxis.type == "category"  # "0", "1" stay labels, not numbers
    assert (fig.layout.xaxis.title.text, fig.layout.yaxis.title.text) == ("pos", "layer")
    # the value a user reads at (layer 1, S1) is the one PatchingResult.value returns
    row, col = list(heat.y).index("1"), list(heat.x).index("S1")
    assert float(np.asarray(heat.z)[row, col]) == result.value(layer="1", pos="S1")
    assert plot_patching(result, zmid=0.5).data[0].zmid == 0.5


def test_plot_patching_one_axis_is_a_bar_chart():
    result = _result((3,), ("pos",))
    fig = plot_patching(result, title="by position")
    assert fig.data[0].type == "bar"
    np.testing.assert_array_equal(np.asarray(fig.data[0].y), [-1.0, 0.5, 2.0])
    assert list(fig.data[0].x) == ["R1", "S1", "A1"]
    assert fig.layout.yaxis.title.text == "restored logit diff"
    assert fig.layout.title.text == "by position"


def test_plot_patching_three_axes_is_one_facet_per_first_axis_entry():
    result = _result((2, 4, 3), ("layer", "head", "pos"))
    fig = plot_patching(result)
    assert len(fig.data) == 2
    for i, trace in enumerate(fig.data):
        np.testing.assert_array_equal(np.asarray(trace.z), result.values[i].numpy())
        assert list(trace.y) == ["H0", "H1", "H2", "H3"] and trace.coloraxis == "coloraxis"
    assert [a.text for a in fig.layout.annotations] == ["layer 0", "layer 1"]
    assert fig.layout.coloraxis.cmid == 0
    assert fig.layout.coloraxis.colorbar.title.text == "restored logit diff"


def test_patching_result_plot_method_uses_plot_patching():
    result = _result((2, 3), ("layer", "pos"))
    assert result.plot().to_dict() == plot_patching(result).to_dict()


def test_plot_patching_rejects_other_inputs():
    with pytest.raises(BatchError, match="PatchingResult, got Tensor"):
        plot_patching(torch.zeros(2, 3))
    scalar = PatchingResult(torch.tensor(1.0), axes=(), labels={})
    with pytest.raises(BatchError, match=r"1 or 2 or 3 dimension\(s\), got shape \[\]"):
        plot_patching(scalar)
    four = PatchingResult(
        torch.zeros(1, 1, 1, 1), axes=("a", "b", "c", "d"), labels={key: ["x"] for key in "abcd"}
    )
    with pytest.raises(BatchError, match=r"got shape \[1, 1, 1, 1\]"):
        plot_patching(four)


# ---------------------------------------------------------------- congruence


def test_plot_congruence_is_a_strip_per_action_ordered_by_layer_then_action():
    values = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(2))
    fig = plot_congruence(values, action_names=ACTIONS3)
    assert [t.name for t in fig.data] == ACTIONS3
    for a, trace in enumerate(fig.data):
        expected_y, expected_x, expected_neuron = [], [], []
        for layer in range(2):
            for neuron in range(5):
                expected_y.append(float(values[layer, neuron, a]))
                expected_x.append(f"L{layer} {ACTIONS3[a]}")
                expected_neuron.append(str(neuron))
        np.testing.assert_allclose(np.asarray(trace.y), expected_y)
        assert list(trace.x) == expected_x
        assert [row[1] for row in trace.customdata] == expected_neuron
        assert trace.boxpoints == "all" and "neuron %{customdata[1]}" in trace.hovertemplate
    order = ["L0 left", "L0 right", "L0 forward", "L1 left", "L1 right", "L1 forward"]
    assert list(fig.layout.xaxis.categoryarray) == order
    # colours restart at each layer: one colour per action trace, all different
    assert len({t.marker.color for t in fig.data}) == 3


def test_plot_congruence_growth_has_one_line_per_action():
    values = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.0, 4.0]])
    fig = plot_congruence_growth(values, ACTIONS3, layer_labels=["layer 0", "layer 1"])
    assert [t.name for t in fig.data] == ACTIONS3
    for a, trace in enumerate(fig.data):
        assert np.asarray(trace.y).tolist() == [float(values[0, a]), float(values[1, a])]
        assert list(trace.x) == ["layer 0", "layer 1"]


def test_congruence_shape_errors():
    with pytest.raises(BatchError, match=r"3 dimension\(s\), got shape \[4, 3\]"):
        plot_congruence(torch.zeros(4, 3), ACTIONS3)
    with pytest.raises(BatchError, match=r"action names: got 7 labels .* size 3"):
        plot_congruence(torch.zeros(2, 4, 3))  # default: MiniGrid's seven names
    with pytest.raises(BatchError, match=r"layer labels: got 1 labels .* size 2"):
        plot_congruence_growth(torch.zeros(2, 3), ACTIONS3, layer_labels=["L0"])


# ---------------------------------------------------------------- logit lens / DLA


def test_plot_logit_lens_one_and_two_dimensional():
    line = plot_logit_lens(torch.tensor([0.5, -2.0, 4.0]), ["embed", "L0", "L1"])
    assert line.data[0].type == "scatter"
    assert np.asarray(line.data[0].y).tolist() == [0.5, -2.0, 4.0]
    assert list(line.data[0].x) == ["embed", "L0", "L1"]

    values = torch.arange(6.0).reshape(2, 3) - 2
    heat = plot_logit_lens(values, ["L0", "L1"], ACTIONS3).data[0]
    np.testing.assert_array_equal(np.asarray(heat.z), values.numpy())
    assert list(heat.x) == ACTIONS3 and list(heat.y) == ["L0", "L1"] and heat.zmid == 0

    lines = plot_logit_lens(values, ["L0", "L1"], ACTIONS3, kind="lines")
    assert [t.name for t in lines.data] == ACTIONS3
    assert np.asarray(lines.data[2].y).tolist() == [0.0, 3.0]
    with pytest.raises(BatchError, match="kind must be"):
        plot_logit_lens(values, kind="bars")
    with pytest.raises(BatchError, match=r"layer labels: got 3 labels .* size 2"):
        plot_logit_lens(values, ["a", "b", "c"], ACTIONS3)


def test_plot_dla_bars_and_heatmap():
    bars = plot_dla(torch.tensor([1.0, -0.5]), ["embed", "L0H1"])
    assert bars.data[0].type == "bar"
    assert np.asarray(bars.data[0].y).tolist() == [1.0, -0.5]
    assert list(bars.data[0].x) == ["embed", "L0H1"] and bars.data[0].marker.cmid == 0

    values = torch.tensor([[1.0, -1.0, 0.25], [0.0, 2.0, -3.0]])
    heat = plot_dla(values, ["embed", "L0 mlp"], ACTIONS3).data[0]
    np.testing.assert_array_equal(np.asarray(heat.z), values.numpy())
    assert list(heat.y) == ["embed", "L0 mlp"]
    with pytest.raises(BatchError, match=r"component labels: got 1 labels .* size 2"):
        plot_dla(values, ["embed"], ACTIONS3)
    with pytest.raises(BatchError, match=r"got shape \[1, 2, 3\]"):
        plot_dla(values[None], ["x"], ACTIONS3)


# ---------------------------------------------------------------- calibration


RTGS = np.array([0.0, 0.5, 1.0])
REWARDS = np.array([[0.0, 0.0, 0.2, 0.2], [0.0, 0.9, 0.9, 0.8], [0.9, 0.9, 0.7, 0.9]])


def _by_name(fig: go.Figure, name: str) -> list:
    return [t for t in fig.data if t.name == name]


def test_plot_calibration_mean_band_points_and_identity():
    fig = plot_calibration(RTGS, REWARDS)
    n = REWARDS.shape[1]
    means = [sum(row) / n for row in REWARDS.tolist()]
    stds = [
        math.sqrt(sum((r - m) ** 2 for r in row) / (n - 1))
        for row, m in zip(REWARDS.tolist(), means, strict=True)
    ]
    z95 = statistics.NormalDist().inv_cdf(0.975)  # two-sided 95%
    half = [z95 * s / math.sqrt(n) for s in stds]

    (mean,) = _by_name(fig, "mean reward")
    np.testing.assert_allclose(np.asarray(mean.y), means)
    np.testing.assert_array_equal(np.asarray(mean.x), RTGS)
    upper, lower = _by_name(fig, "95% CI")
    np.testing.assert_allclose(np.asarray(upper.y), np.add(means, half), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(lower.y), np.subtract(means, half), rtol=1e-5)
    assert lower.fill == "tonexty"  # the band is shaded between the two edges

    (points,) = _by_name(fig, "episodes")
    np.testing.assert_array_equal(np.asarray(points.y), REWARDS.reshape(-1))
    asked = np.asarray(points.customdata)[:, 0].astype(float)
    np.testing.assert_array_equal(asked, np.repeat(RTGS, n))
    # jitter is horizontal and stays within the violin around the RTG asked
    violin_width = 0.8 * 0.5  # 0.8 of the RTG spacing
    assert np.all(np.abs(np.asarray(points.x) - asked) <= violin_width / 2)

    (violin,) = _by_name(fig, "distribution")
    np.testing.assert_array_equal(np.asarray(violin.y), REWARDS.reshape(-1))
    np.testing.assert_array_equal(np.asarray(violin.x), np.repeat(RTGS, n))
    (identity,) = _by_name(fig, "reward = RTG")
    assert list(identity.x) == [0.0, 1.0] and list(identity.y) == [0.0, 1.0]
    assert fig.layout.xaxis.title.text == "RTG asked"


def test_plot_calibration_std_band_and_success_colouring():
    success = REWARDS > 0.5
    fig = plot_calibration(torch.tensor(RTGS), torch.tensor(REWARDS), success, band="std")
    n = REWARDS.shape[1]
    means = REWARDS.sum(1) / n
    std = np.sqrt(((REWARDS - means[:, None]) ** 2).sum(1) / (n - 1))
    upper, lower = _by_name(fig, "± 1 std")
    np.testing.assert_allclose(np.asarray(upper.y), means + std)
    np.testing.assert_allclose(np.asarray(lower.y), means - std)
    (good,), (bad,) = _by_name(fig, "succeeded"), _by_name(fig, "failed")
    np.testing.assert_array_equal(np.asarray(good.y), REWARDS[success])
    np.testing.assert_array_equal(np.asarray(bad.y), REWARDS[~success])
    assert good.marker.color != bad.marker.color
    assert not _by_name(fig, "95% CI")
    no_band = plot_calibration(RTGS, REWARDS, band="none")
    assert [t.name for t in no_band.data] == [
        "distribution",
        "episodes",
        "mean reward",
        "reward = RTG",
    ]


def test_plot_calibration_errors():
    with pytest.raises(BatchError, match=r"shape \[2, 4\] but there are 3 rtgs"):
        plot_calibration(RTGS, REWARDS[:2])
    with pytest.raises(BatchError, match=r"strictly increasing, got \[0.5, 0.0, 1.0\]"):
        plot_calibration(RTGS[[1, 0, 2]], REWARDS)
    with pytest.raises(BatchError, match=r"success must have the rewards' shape \[3, 4\]"):
        plot_calibration(RTGS, REWARDS, np.ones((3, 2), dtype=bool))
    with pytest.raises(BatchError, match="must be boolean, got dtype float64"):
        plot_calibration(RTGS, REWARDS, np.ones((3, 4)))
    with pytest.raises(BatchError, match=r"at least 2 episodes .* \[3, 1\]"):
        plot_calibration(RTGS, REWARDS[:, :1])
    plot_calibration(RTGS, REWARDS[:, :1], band="none")  # one episode: fine without a band
    with pytest.raises(BatchError, match="band must be"):
        plot_calibration(RTGS, REWARDS, band="90ci")


def test_plot_reward_length_scatter_splits_success_and_failure():
    rewards = np.array([0.9, 0.0, 0.5, 0.0, 0.8])
    lengths = np.array([10, 50, 40, 3, 20])
    fig = plot_reward_length_scatter(rewards, lengths)
    (good,) = [t for t in fig.data if t.type == "scatter" and t.name == "succeeded"]
    (bad,) = [t for t in fig.data if t.type == "scatter" and t.name == "failed"]
    assert np.asarray(good.x).tolist() == [10, 40, 20]
    assert np.asarray(good.y).tolist() == [0.9, 0.5, 0.8]
    assert np.asarray(good.customdata).tolist() == [0, 2, 4]  # episode indices
    assert np.asarray(bad.x).tolist() == [50, 3]
    histograms = [t for t in fig.data if t.type == "histogram"]
    assert len(histograms) == 4  # length and reward marginals for each group
    (length_hist,) = [t for t in histograms if t.name == "failed" and t.x is not None]
    assert np.asarray(length_hist.x).tolist() == [50, 3]
    explicit = plot_reward_length_scatter(rewards, lengths, success=rewards > 0.85)
    assert np.asarray(explicit.data[0].y).tolist() == [0.9]
    with pytest.raises(BatchError, match=r"\[5\] and \[4\]"):
        plot_reward_length_scatter(rewards, lengths[:4])


# ---------------------------------------------------------------- trajectory


def test_plot_action_probabilities_rows_are_actions():
    logits = torch.randn(4, 7, generator=torch.Generator().manual_seed(3))
    probs = logits.softmax(-1)
    steps = ["1: left", "2: forward", "3: forward", "4: right"]
    fig = plot_action_probabilities(probs, step_labels=steps)
    heat = fig.data[0]
    for a in range(7):
        for t in range(4):
            assert float(np.asarray(heat.z)[a, t]) == float(probs[t, a])
    assert list(heat.x) == steps
    assert list(heat.y) == ["left", "right", "forward", "pickup", "drop", "toggle", "done"]
    assert (heat.zmin, heat.zmax) == (0.0, 1.0)
    assert list(plot_action_probabilities(probs).data[0].x) == ["1", "2", "3", "4"]
    with pytest.raises(BatchError, match="pass softmax"):
        plot_action_probabilities(logits)
    with pytest.raises(BatchError, match=r"step labels: got 2 labels .* size 4"):
        plot_action_probabilities(probs, step_labels=steps[:2])


def test_plot_action_maps_checks_only_the_placed_probabilities():
    probs = np.full((1, 7, 7, 4, 7), np.nan)  # NaN: the agent was not placed there
    probs[0, 2, 3] = 1 / 7
    fig = plot_action_maps(probs, np.full((1, 7, 7), "empty"), ["key/top-ball"])
    wedges = [t for t in fig.data if t.meta == "wedges"]
    assert len(wedges) == 3  # actions 0, 1, 2
    for trace in wedges:  # the four facings of square (2, 3), each 1/7
        assert [list(c) for c in trace.customdata] == [[2, 3, d] for d in range(4)]
        np.testing.assert_allclose(trace.marker.color, [1 / 7] * 4)
    probs[0, 2, 3, 0, 0] = 2.0  # a logit, not a probability
    with pytest.raises(
        BatchError, match=r"probs must lie in \[0, 1\], got values in \[0.1429, 2\]"
    ):
        plot_action_maps(probs, np.full((1, 7, 7), "empty"))


def test_plot_steering_panels_share_one_zero_to_one_colour_axis():
    outcomes = np.zeros((2, 3, 2, 3))  # [hook, coef, rtg, outcome]
    outcomes[..., 0, 1] = [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]  # other object, first RTG
    outcomes[..., 1, 1] = [[0.0, 1.0, np.nan], [0.25, 0.75, 0.5]]  # and last RTG
    result = SimpleNamespace(
        fact="instruction",
        hooks=("blocks.0.hook_resid_post", "blocks.1.hook_resid_post"),
        coefficients=(1.0, 2.0, 4.0),
        rtgs=(0.9, 0.0),
        outcomes=outcomes,
    )
    fig = plot_steering(result)
    assert len(fig.data) == 2
    np.testing.assert_array_equal(np.array(fig.data[0].z, dtype=float), outcomes[..., 0, 1])
    np.testing.assert_array_equal(np.array(fig.data[1].z, dtype=float), outcomes[..., 1, 1])
    assert [t.coloraxis for t in fig.data] == ["coloraxis", "coloraxis"]
    axis = fig.layout.coloraxis
    assert (axis.cmin, axis.cmax, axis.colorbar.title.text) == (0.0, 1.0, "share")
    assert list(fig.data[1].text[0]) == ["0.00", "1.00", ""]  # the unplayed cell is blank
    assert list(fig.data[0].x) == ["1", "2", "4"]


def test_plot_grid_shows_the_pixels_as_given():
    rgb = np.random.default_rng(0).integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    fig = plot_grid(rgb, title="frame")
    assert fig.data[0].type == "image"
    np.testing.assert_array_equal(np.asarray(fig.data[0].z), rgb)
    assert fig.layout.xaxis.visible is False
    with pytest.raises(ObservationError, match="dtype float64"):
        plot_grid(rgb / 255.0)
    with pytest.raises(ObservationError, match=r"\[6, 8\]"):
        plot_grid(rgb[..., 0])
    with pytest.raises(ObservationError, match=r"\[-1, 255\]"):
        plot_grid(np.full((2, 2, 3), -1, dtype=np.int16) + np.array([0, 0, 256], dtype=np.int16))


# ---------------------------------------------------------------- all figures


def _all_figures() -> list[go.Figure]:
    return [
        plot_attention(torch.rand(5, 5), LABELS),
        plot_attention_comparison(torch.rand(5, 5), torch.rand(5, 5), LABELS),
        plot_attention_heads(torch.rand(2, 5, 5), LABELS),
        plot_patching(_result((2, 3), ("layer", "pos"))),
        plot_patching(_result((3,), ("pos",))),
        plot_patching(_result((2, 4, 3), ("layer", "head", "pos"))),
        plot_congruence(torch.randn(2, 4, 3), ACTIONS3),
        plot_congruence_growth(torch.randn(2, 3), ACTIONS3),
        plot_logit_lens(torch.randn(3)),
        plot_logit_lens(torch.randn(3, 3), action_names=ACTIONS3),
        plot_dla(torch.randn(4)),
        plot_dla(torch.randn(4, 3), action_names=ACTIONS3),
        plot_calibration(RTGS, REWARDS, REWARDS > 0.5),
        plot_reward_length_scatter(REWARDS[0], np.arange(4)),
        plot_action_probabilities(torch.full((3, 7), 1 / 7)),
        plot_action_probability_grid([torch.full((3, 7), 1 / 7), torch.full((20, 7), 1 / 7)]),
        plot_grid(np.zeros((4, 4, 3), dtype=np.uint8)),
    ]


def test_every_figure_serialises_to_valid_json_and_html():
    for fig in _all_figures():
        assert isinstance(fig, go.Figure)
        _strict_json(fig)  # masked NaN cells become null, which browsers accept
        page = fig.to_html(include_plotlyjs=False, full_html=False)
        assert "Plotly.newPlot" in page


def test_plotting_errors_are_dtlens_errors():
    assert issubclass(BatchError, DTLensError) and issubclass(ObservationError, DTLensError)
    with pytest.raises(DTLensError, match=r"must be a torch\.Tensor or numpy array, got list"):
        plot_dla([1.0, 2.0])
