"""Batched activation patching against invariants and a naive one-forward-per-patch loop.

The naive reference is written here with plain ``model.run_with_hooks``: a full
forward of the corrupt (or clean) batch per patch, with a hook that copies the cached
activation of the other run into one location by explicit indexing. The batched
sweep (stacked rows, chunking, prefix reuse, one masked hook) must match it.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from dtlens.analysis.patching import engine as patch_sweeps
from dtlens.analysis.patching.activation import PATCHING_SWEEPS, activation_patching
from dtlens.analysis.patching.chunks import SUFFIX_MIN_ROWS
from dtlens.analysis.patching.engine import patched_metrics
from dtlens.errors import BatchError, ConfigError, DTLensError
from tests.conftest import build_batch, build_model
from tests.unit.patching_locations import location_index

ATOL = 1e-5
N_PAIRS = 3
MAX_BATCH = 7  # 2 patches x 3 pairs per chunk: every sweep runs in several chunks

EMBED_HOOK = {
    "rtg_embed": "hook_rtg_embed",
    "state_embed": "hook_state_embed",
    "action_embed": "hook_action_embed",
    "time_embed": "hook_time_embed",
}
BLOCK_HOOK = {
    "resid_pre": "blocks.{}.hook_resid_pre",
    "resid_post": "blocks.{}.hook_resid_post",
    "attn_out": "blocks.{}.hook_attn_out",
    "mlp_out": "blocks.{}.hook_mlp_out",
    "z": "blocks.{}.attn.hook_z",
    "q": "blocks.{}.attn.hook_q",
    "k": "blocks.{}.attn.hook_k",
    "v": "blocks.{}.attn.hook_v",
    "pattern": "blocks.{}.attn.hook_pattern",
    "mlp_post": "blocks.{}.mlp.hook_post",
}


def metric(logits: torch.Tensor) -> torch.Tensor:
    """Logit difference of actions 0 and 1 at the last token, per pair."""
    return logits[:, -1, 0] - logits[:, -1, 1]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    return build_model(d_mlp=8)  # few neurons keep the naive neuron x pos loop short


@pytest.fixture(scope="module", params=["unpadded", "padded"])
def pair(request):
    """3 clean/corrupt pairs; the corrupt timesteps differ so time_embed patches matter.

    The padded variant left-pads rows differently (2, 1 and 0 padding steps).
    """
    clean = build_batch(N_PAIRS, seed=10)
    corrupt = build_batch(N_PAIRS, seed=11, start_timestep=2)
    if request.param == "padded":
        mask = torch.tensor([[False, False, True, True], [False, True, True, True], [True] * 4])
        clean, corrupt = clean.replace(padding_mask=mask), corrupt.replace(padding_mask=mask)
    return clean, corrupt


# ------------------------------------------------------------------ naive reference


def naive_sweep(model, clean, corrupt, hook, by, direction="denoise", layer=None):
    """One full forward per patch; returns the raw metric ``[*sizes in by order, B]``."""
    base, source = (corrupt, clean) if direction == "denoise" else (clean, corrupt)
    _, cache = model.run_with_cache(source)
    layers = list(range(model.cfg.n_layers)) if "layer" in by else [layer]

    def name_of(lay):
        if hook in EMBED_HOOK:
            return EMBED_HOOK[hook]
        if hook == "resid_mid":
            return f"blocks.{lay}.hook_resid_mid"
        return BLOCK_HOOK[hook].format(lay)

    example = cache[name_of(layers[0])]
    n_heads = model.cfg.n_heads
    sizes = {
        "layer": len(layers),
        "pos": example.shape[2] if hook == "pattern" else example.shape[1],
        "head": n_heads,
        "neuron": example.shape[-1],
    }
    out = torch.zeros(*[sizes[a] for a in by], base.batch_size)
    for idx in itertools.product(*[range(sizes[a]) for a in by]):
        loc = dict(zip(by, idx, strict=True))
        lay = layers[loc.get("layer", 0)]
        index = (slice(None), *location_index(hook, loc))
        if hook == "resid_mid":
            hooks = _resid_mid_hooks(lay, index, cache[f"blocks.{lay}.hook_resid_mid"])
        else:
            clean_act = cache[name_of(lay)]

            def patch(act, hook, index=index, clean_act=clean_act):
                act = act.clone()
                act[index] = clean_act[index]
                return act

            hooks = [(name_of(lay), patch)]
        with torch.no_grad():
            out[idx] = metric(model.run_with_hooks(base, fwd_hooks=hooks))
    return out


def _resid_mid_hooks(layer, index, source_mid):
    """Patch the residual stream between attention and MLP (HookedTransformer's meaning).

    ``blocks.L.hook_resid_mid`` is only the MLP's input on the native bridge, so the
    reference records resid_pre and writes ``source_mid - resid_pre`` into attn_out.
    """
    seen = {}

    def record(act, hook):
        seen["pre"] = act.clone()

    def patch(act, hook):
        act = act.clone()
        act[index] = source_mid[index] - seen["pre"][index]
        return act

    return [(f"blocks.{layer}.hook_resid_pre", record), (f"blocks.{layer}.hook_attn_out", patch)]


SWEEP_CASES = [
    (hook, by, 1 if hook == "mlp_post" else None)
    for hook, bys in PATCHING_SWEEPS.items()
    for by in bys
]


@pytest.mark.parametrize(("hook", "by", "layer"), SWEEP_CASES, ids=lambda v: str(v))
def test_sweep_matches_one_forward_per_patch(model, pair, hook, by, layer):
    clean, corrupt = pair
    expected = naive_sweep(model, clean, corrupt, hook, by, layer=layer)
    raw = activation_patching(
        model, clean, corrupt, metric, hook, by, normalize=False, layer=layer,
        max_batch=MAX_BATCH, show_progress=False,
    )  # fmt: skip
    torch.testing.assert_close(raw.info["per_pair"], expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(raw.values, expected.mean(-1), atol=ATOL, rtol=0)


def test_normalised_values_are_the_mean_restored_fraction(model, pair):
    clean, corrupt = pair
    expected = naive_sweep(model, clean, corrupt, "attn_out", ("layer", "pos"))
    clean_m, corrupt_m = metric(model(clean)).detach(), metric(model(corrupt)).detach()
    result = activation_patching(model, clean, corrupt, metric, "attn_out", max_batch=MAX_BATCH)
    expected_restored = (expected - corrupt_m) / (clean_m - corrupt_m)
    torch.testing.assert_close(result.info["per_pair"], expected_restored, atol=1e-4, rtol=0)
    torch.testing.assert_close(result.values, expected_restored.mean(-1), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("hook", "by"), [("resid_pre", ("layer", "pos")), ("z", ("layer", "head", "pos"))]
)
def test_noise_direction_matches_one_forward_per_patch(model, pair, hook, by):
    clean, corrupt = pair
    expected = naive_sweep(model, clean, corrupt, hook, by, direction="noise")
    result = activation_patching(
        model, clean, corrupt, metric, hook, by, direction="noise", normalize=False,
        max_batch=MAX_BATCH, show_progress=False,
    )  # fmt: skip
    torch.testing.assert_close(result.values, expected.mean(-1), atol=ATOL, rtol=0)


def test_axis_order_follows_by(model, pair):
    clean, corrupt = pair
    kwargs = dict(normalize=False, show_progress=False)
    head_pos = activation_patching(
        model, clean, corrupt, metric, "z", ("layer", "head", "pos"), **kwargs
    )
    pos_head = activation_patching(
        model, clean, corrupt, metric, "z", ("pos", "layer", "head"), **kwargs
    )
    assert pos_head.axes == ("pos", "layer", "head")
    torch.testing.assert_close(pos_head.values, head_pos.values.permute(2, 0, 1))
    assert pos_head.value(pos="S4", layer="1", head="H2") == head_pos.value(
        layer="1", head="H2", pos="S4"
    )


# ------------------------------------------------------------------------ invariants
@pytest.mark.parametrize("hook", ["resid_pre", "resid_mid", "resid_post"])
@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_patching_everything_gives_source_and_nothing_gives_base(model, pair, hook, direction):
    """Residual stream of every position = the other run's; no position = unchanged."""
    clean, corrupt = pair
    base, source = (corrupt, clean) if direction == "denoise" else (clean, corrupt)
    clean_m, corrupt_m = metric(model(clean)).detach(), metric(model(corrupt)).detach()
    n_tokens = corrupt.n_tokens(3)
    masks = torch.stack([torch.zeros(n_tokens, 1), torch.ones(n_tokens, 1)]).bool()
    for layer in range(model.cfg.n_layers):
        name = f"blocks.{layer}.hook_{hook}"
        out = patched_metrics(model, base, source, metric, name, masks, max_batch=MAX_BATCH)
        restored = (out - corrupt_m) / (clean_m - corrupt_m)
        nothing, everything = (0.0, 1.0) if direction == "denoise" else (1.0, 0.0)
        torch.testing.assert_close(restored[0], torch.full((N_PAIRS,), nothing), atol=1e-4, rtol=0)
        torch.testing.assert_close(
            restored[1], torch.full((N_PAIRS,), everything), atol=1e-4, rtol=0
        )


def test_patching_an_identical_activation_has_no_effect(model):
    """Clean and corrupt share timesteps here, so every time_embed patch is a no-op (0)."""
    clean, corrupt = build_batch(N_PAIRS, seed=10), build_batch(N_PAIRS, seed=11)
    result = activation_patching(model, clean, corrupt, metric, "time_embed", ("pos",))
    torch.testing.assert_close(result.values, torch.zeros(4), atol=1e-6, rtol=0)


def test_padded_positions_have_no_effect(model):
    """A left-padded step is masked out of attention: patching it changes nothing."""
    clean = build_batch(1, n_steps=2, seed=10).left_pad(4, pad_action=7)
    corrupt = build_batch(1, n_steps=2, seed=11).left_pad(4, pad_action=7)
    corrupt = corrupt.replace(obs=corrupt.obs.clone())
    corrupt.obs[:, :2] = 1.0  # padding observations differ between the runs
    result = activation_patching(model, clean, corrupt, metric, "resid_pre", normalize=False)
    corrupt_m = float(metric(model(corrupt)).detach())
    padded = result.values[:, :6]  # R1 S1 A1 R2 S2 A2 are padding
    torch.testing.assert_close(padded, torch.full_like(padded, corrupt_m), atol=ATOL, rtol=0)
    assert (result.values[0, 6:] - corrupt_m).abs().max() > 1e-3  # real tokens do matter


def test_zero_ablation_with_a_tensor_source(model, pair):
    _clean, corrupt = pair
    name = "blocks.1.attn.hook_z"
    masks = torch.eye(model.cfg.n_heads, dtype=torch.bool)[:, None, :, None]
    out = patched_metrics(model, corrupt, torch.zeros(1), metric, name, masks)
    for head in range(model.cfg.n_heads):

        def ablate(act, hook, head=head):
            act = act.clone()
            act[:, :, head] = 0.0
            return act

        with torch.no_grad():
            expected = metric(model.run_with_hooks(corrupt, fwd_hooks=[(name, ablate)]))
        torch.testing.assert_close(out[head], expected, atol=ATOL, rtol=0)


# --------------------------------------------------------------------- batching
def test_sweep_runs_in_chunked_batched_forwards_reusing_the_prefix(model):
    """2 layers x 11 positions x 3 pairs = 66 rows: chunks of <= 7 rows, none below layer L."""
    clean, corrupt = build_batch(N_PAIRS, seed=10), build_batch(N_PAIRS, seed=11)
    rows = {0: [], 1: []}

    def count(layer):
        def hook(act, hook):
            rows[layer].append(act.shape[0])

        return hook

    hooks = [(f"blocks.{lay}.hook_resid_pre", count(lay)) for lay in (0, 1)]
    with model.hooks(fwd_hooks=hooks):
        activation_patching(model, clean, corrupt, metric, max_batch=MAX_BATCH)
    # two unpatched runs (clean, corrupt), then 6 chunks of 2 patches x 3 pairs per layer
    assert rows[0] == [3, 3] + [6] * 5 + [3]
    assert rows[1] == [3, 3] + [6] * 5 + [3] + [6] * 5 + [3]


def test_max_batch_smaller_than_the_pairs_runs_one_patch_per_forward(model):
    clean, corrupt = build_batch(N_PAIRS, seed=10), build_batch(N_PAIRS, seed=11)
    small = activation_patching(model, clean, corrupt, metric, "mlp_out", max_batch=1)
    large = activation_patching(model, clean, corrupt, metric, "mlp_out")
    torch.testing.assert_close(small.values, large.values, atol=ATOL, rtol=0)


def test_position_sweeps_recompute_only_from_each_chunks_first_position(model, monkeypatch):
    """Without hooks, residual patches run sorted by position, from the chunk's first one.

    The values equal the hooked path's (which recomputes whole windows and is itself
    checked against the naive loop above), every patch runs exactly once, and every
    chunk but the last holds at least SUFFIX_MIN_ROWS rows.
    """
    clean, corrupt = build_batch(16, seed=10), build_batch(16, seed=11)
    calls = []
    real = patch_sweeps.forward_suffix

    def record(model, prefix, resid, layer, first_pos, pair, mid=False):
        calls.append((layer, first_pos, resid.shape[0], resid.shape[1]))
        return real(model, prefix, resid, layer, first_pos, pair, mid)

    monkeypatch.setattr(patch_sweeps, "forward_suffix", record)
    fast = activation_patching(model, clean, corrupt, metric, "z", ("layer", "head", "pos"))
    with model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", lambda act, hook: act)]):
        full = activation_patching(model, clean, corrupt, metric, "z", ("layer", "head", "pos"))
    torch.testing.assert_close(fast.info["per_pair"], full.info["per_pair"], atol=ATOL, rtol=0)

    n_pos, n_heads = 11, model.cfg.n_heads
    for layer in range(model.cfg.n_layers):
        chunks = [c for c in calls if c[0] == layer]
        assert sum(rows for _, _, rows, _ in chunks) == 16 * n_heads * n_pos
        firsts = [first for _, first, _, _ in chunks]
        assert firsts == sorted(firsts) and firsts[0] == 0 and firsts[-1] > 0
        assert all(length == n_pos - first for _, first, _, length in chunks)
        assert all(rows >= SUFFIX_MIN_ROWS for _, _, rows, _ in chunks[:-1])


def test_suffix_chunks_patching_everything_nothing_and_a_suffix(model):
    """70 pairs: each patch is its own chunk (70 >= SUFFIX_MIN_ROWS rows), from 0, 11 (writes
    nowhere: the base run's logits) and 7. Everything = clean, nothing = corrupt, the
    suffix patch = the hooked whole-window path."""
    clean, corrupt = build_batch(70, seed=0), build_batch(70, seed=1)
    masks = torch.zeros(3, 11, 1, dtype=torch.bool)
    masks[0], masks[2, 7:] = True, True
    name = "blocks.0.hook_resid_mid"
    out = patched_metrics(model, corrupt, clean, metric, name, masks)
    with torch.no_grad():
        torch.testing.assert_close(out[0], metric(model(clean)), atol=ATOL, rtol=0)
        torch.testing.assert_close(out[1], metric(model(corrupt)), atol=0, rtol=0)
    with model.hooks(fwd_hooks=[("blocks.1.hook_resid_pre", lambda act, hook: act)]):
        hooked = patched_metrics(model, corrupt, clean, metric, name, masks)
    torch.testing.assert_close(out, hooked, atol=ATOL, rtol=0)


def test_hooks_attached_by_the_user_stay_in_effect_during_a_sweep(model, pair):
    """A sweep under a user's ablation hook equals the naive loop under the same hook."""
    clean, corrupt = pair
    ablate = ("blocks.0.attn.hook_z", lambda act, hook: act * 0.5)
    with model.hooks(fwd_hooks=[ablate]):
        expected = naive_sweep(model, clean, corrupt, "resid_pre", ("layer", "pos"))
        raw = activation_patching(model, clean, corrupt, metric, normalize=False)
    torch.testing.assert_close(raw.info["per_pair"], expected, atol=ATOL, rtol=0)


# ----------------------------------------------------------------- result format
def test_labels_and_info(model, pair):
    clean, corrupt = pair
    pos = activation_patching(model, clean, corrupt, metric, "resid_pre")
    assert pos.labels == {"layer": ["0", "1"], "pos": model.token_labels(clean)}
    assert pos.metric_name == "restored fraction of metric"
    torch.testing.assert_close(pos.info["clean_metric"], metric(model(clean)).detach())
    torch.testing.assert_close(pos.info["corrupt_metric"], metric(model(corrupt)).detach())
    assert pos.info["per_pair"].shape == (2, 11, N_PAIRS)
    head = activation_patching(model, clean, corrupt, metric, "z", ("layer", "head"))
    assert head.labels["head"] == ["H0", "H1", "H2", "H3"]
    actions = activation_patching(model, clean, corrupt, metric, "action_embed", ("pos",))
    assert actions.labels == {"pos": ["A1", "A2", "A3"]}
    neurons = activation_patching(model, clean, corrupt, metric, "mlp_post", ("neuron",), layer=0)
    assert neurons.labels["neuron"][:2] == ["N0", "N1"] and neurons.info["layer"] == 0


def test_named_metric_names_the_result(model, pair):
    clean, corrupt = pair

    def logit_gap(logits):
        return logits[:, -1, 2] - logits[:, -1, 3]

    result = activation_patching(
        model, clean, corrupt, logit_gap, "rtg_embed", ("pos",), normalize=False
    )
    assert result.metric_name == "logit_gap"
    assert result.labels == {"pos": ["R1", "R2", "R3", "R4"]}


# ------------------------------------------------------------------------ errors
def test_unknown_hook_lists_valid_ones(model, pair):
    with pytest.raises(DTLensError, match=r"unknown patching hook 'resid'.*resid_pre"):
        activation_patching(model, *pair, metric, "resid")


def test_invalid_by_lists_valid_ones(model, pair):
    with pytest.raises(DTLensError, match=r"cannot be swept by \('layer', 'head'\).*'pos'"):
        activation_patching(model, *pair, metric, "resid_pre", ("layer", "head"))
    with pytest.raises(DTLensError, match="tuple of axis names"):
        activation_patching(model, *pair, metric, "rtg_embed", "pos")


def test_window_mismatch_raises(model):
    clean, corrupt = build_batch(2, n_steps=4), build_batch(2, n_steps=3)
    shapes = r"obs is \[2, 4, 7, 7, 20\] in one and \[2, 3, 7, 7, 20\]"
    with pytest.raises(BatchError, match=shapes):
        activation_patching(model, clean, corrupt, metric)
    with pytest.raises(BatchError, match="padding_mask is None in one"):
        activation_patching(model, clean, clean.left_pad(4, pad_action=7), metric)


def test_layer_argument_is_checked(model, pair):
    with pytest.raises(ConfigError, match=r"pass layer= an int in 0\.\.1, got None"):
        activation_patching(model, *pair, metric, "mlp_post", ("neuron",))
    with pytest.raises(ConfigError, match=r"pass layer= an int in 0\.\.1, got 2"):
        activation_patching(model, *pair, metric, "mlp_post", ("neuron",), layer=2)
    with pytest.raises(ConfigError, match="only to the one-layer 'mlp_post'"):
        activation_patching(model, *pair, metric, "resid_pre", layer=0)


def test_bad_direction_and_max_batch_raise(model, pair):
    with pytest.raises(ConfigError, match="direction must be 'denoise' or 'noise', got 'up'"):
        activation_patching(model, *pair, metric, direction="up")
    with pytest.raises(ConfigError, match=r"max_batch must be a positive int.*got 0"):
        activation_patching(model, *pair, metric, max_batch=0)


def test_metric_must_return_one_value_per_pair_or_a_scalar(model, pair):
    with pytest.raises(DTLensError, match=r"shape \[B\] = \[3\], or to one scalar.*got \[3, 7\]"):
        activation_patching(model, *pair, lambda logits: logits[:, -1])
    with pytest.raises(DTLensError, match="non-finite values"):
        activation_patching(model, *pair, lambda logits: logits[:, -1, 0] / 0)


@pytest.mark.parametrize("hook, by", [("resid_pre", ("layer", "pos")), ("z", ("layer", "head"))])
def test_a_scalar_metric_is_the_scalar_of_each_patch(model, pair, hook, by):
    """A TransformerLens-style ``.mean()`` metric, evaluated per patch on its B pairs.

    The mean of a per-pair metric is linear, so the raw scalar sweep equals the mean of
    the per-pair sweep, and its restored fraction is the ratio of the means (not the
    mean of per-pair ratios), computed here from the per-pair sweep's raw values.
    """
    scalar = lambda logits: metric(logits).mean()  # noqa: E731
    per_pair = activation_patching(model, *pair, metric, hook, by, normalize=False)
    raw = activation_patching(model, *pair, scalar, hook, by, normalize=False)
    torch.testing.assert_close(raw.values, per_pair.values, atol=ATOL, rtol=0)
    assert raw.info["per_pair"] is None and raw.info["clean_metric"].shape == (1,)
    restored = activation_patching(model, *pair, scalar, hook, by)
    clean, corrupt = (per_pair.info[k].mean() for k in ("clean_metric", "corrupt_metric"))
    expected = (per_pair.values - corrupt) / (clean - corrupt)
    torch.testing.assert_close(restored.values, expected, atol=1e-4, rtol=0)


def test_equal_clean_and_corrupt_metrics_cannot_be_normalised(model):
    clean = build_batch(N_PAIRS, seed=10)
    with pytest.raises(DTLensError, match="normalize=False"):
        activation_patching(model, clean, clean, metric)
    raw = activation_patching(model, clean, clean, metric, normalize=False)
    expected = metric(model(clean)).detach().mean()
    torch.testing.assert_close(raw.values, expected.expand(2, 11), atol=ATOL, rtol=0)


def test_patched_metrics_checks_masks_and_source(model, pair):
    clean, corrupt = pair
    name = "blocks.0.hook_resid_pre"
    with pytest.raises(BatchError, match=r"broadcast to the activation .* \[11, 32\].*\[2, 5, 1\]"):
        patched_metrics(model, corrupt, clean, metric, name, torch.ones(2, 5, 1, dtype=torch.bool))
    with pytest.raises(BatchError, match="bool tensor"):
        patched_metrics(model, corrupt, clean, metric, name, torch.ones(2, 11, 1))
    with pytest.raises(BatchError, match=r"broadcast to the activation's shape \[3, 11, 32\]"):
        patched_metrics(model, corrupt, torch.zeros(5), metric, name, torch.ones(1, 11, 1).bool())
