"""Attribution patching against exact activation patching and a plain autograd reference.

Three independent checks of the first-order estimate
``metric(base) + (a_source - a_base) . d metric / d a``:

* where the map from the patched activation to the metric is affine (no norms, a
  metric linear in the logits, and the nonlinear parts downstream of the patch
  switched off by zeroing weights) the estimate *is* activation patching: compared
  with ``activation_patching`` to 1e-4;
* for every sweep, a reference written here: the gradient of the same intervention
  ``activation_patching`` makes, by autograd on a leaf tensor (the residual stream
  fed to ``model.forward_from_layer``, or a zero tensor added with
  ``model.run_with_hooks`` where the patch is a hook), and the location sums by
  explicit indexing, one location at a time;
* invariants: identical activations give exactly the base metric, per-position
  estimates add up to the estimate of the whole activation, the ``by`` axes only
  reorder the values.
"""

from __future__ import annotations

import itertools
import math
import re

import pytest
import torch
from scipy.stats import spearmanr

import dtlens
from dtlens.analysis.patching.activation import activation_patching
from dtlens.analysis.patching.attribution import (
    attribution_patching,
    gradient_hook_name,
    rank_correlation,
)
from dtlens.analysis.patching.sweeps import PATCHING_SWEEPS
from dtlens.errors import BatchError, ConfigError, DTLensError
from dtlens.model.suffix import model_has_hooks
from tests.conftest import build_batch, build_model
from tests.unit.patching_locations import location_index

N_PAIRS = 3
ATOL = 1e-5

EMBED_HOOK = {
    "rtg_embed": "hook_rtg_embed",
    "state_embed": "hook_state_embed",
    "action_embed": "hook_action_embed",
    "time_embed": "hook_time_embed",
}
ATTENTION_HOOK = {kind: f"blocks.{{}}.attn.hook_{kind}" for kind in ("q", "k", "v", "pattern")}
CACHE_NAME = {
    "resid_pre": "blocks.{}.hook_resid_pre",
    "resid_mid": "blocks.{}.hook_resid_mid",
    "resid_post": "blocks.{}.hook_resid_post",
    "attn_out": "blocks.{}.hook_attn_out",
    "mlp_out": "blocks.{}.hook_mlp_out",
    "z": "blocks.{}.attn.hook_z",
    "mlp_post": "blocks.{}.mlp.hook_post",
    **ATTENTION_HOOK,
}


def metric(logits: torch.Tensor) -> torch.Tensor:
    """Logit difference of actions 0 and 1 at the last token, per pair (linear in logits)."""
    return logits[:, -1, 0] - logits[:, -1, 1]


def scalar_metric(logits: torch.Tensor) -> torch.Tensor:
    return metric(logits).mean()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    return build_model(d_mlp=8)


def make_pair(padded: bool) -> tuple[dtlens.TrajectoryBatch, dtlens.TrajectoryBatch]:
    """3 clean/corrupt pairs as in test_activation_patching: corrupt timesteps differ (so
    time_embed patches matter); the padded variant left-pads rows by 2, 1 and 0 steps."""
    clean = build_batch(N_PAIRS, seed=10)
    corrupt = build_batch(N_PAIRS, seed=11, start_timestep=2)
    if padded:
        mask = torch.tensor([[False, False, True, True], [False, True, True, True], [True] * 4])
        clean, corrupt = clean.replace(padding_mask=mask), corrupt.replace(padding_mask=mask)
    return clean, corrupt


@pytest.fixture(scope="module", params=["unpadded", "padded"])
def pair(request):
    return make_pair(request.param == "padded")


SWEEP_CASES = [
    (hook, by, 1 if hook == "mlp_post" else None)
    for hook, bys in PATCHING_SWEEPS.items()
    for by in bys
]


# ------------------------------------------------------------ the autograd reference
def reference_gradient(model, base, hook: str, layer: int | None) -> torch.Tensor:
    """d sum_b metric_b / d (the activation a sweep of ``hook`` patches), on the ``base`` run.

    Residual-stream patches (everything ``activation_patching`` turns into the residual
    stream at a later point) are differentiated through that very computation, from a
    leaf fed to ``model.forward_from_layer``; q, k, v, the pattern and the embeddings
    through a zero tensor added where the hook fires.
    """
    if hook in EMBED_HOOK or hook in ATTENTION_HOOK:
        name = EMBED_HOOK.get(hook) or ATTENTION_HOOK[hook].format(layer)
        _, cache = model.run_with_cache(base, names_filter=[name])
        delta = torch.zeros_like(cache[name], requires_grad=True)
        logits = model.run_with_hooks(base, fwd_hooks=[(name, lambda act, hook: act + delta)])
        return torch.autograd.grad(metric(logits).sum(), delta)[0]

    _, cache = model.run_with_cache(base)
    core, block = model.core, model.core.blocks[layer]
    pre = cache[f"blocks.{layer}.hook_resid_pre"]
    mid = cache[f"blocks.{layer}.hook_resid_mid"]

    def from_mid(resid_mid):  # the residual stream between attention and MLP -> logits
        resid_post = resid_mid + block.mlp(block.ln2(resid_mid))
        return model.forward_from_layer(resid_post, layer + 1, base)

    leaf = cache[CACHE_NAME[hook].format(layer)].clone().requires_grad_(True)
    if hook == "resid_pre":
        logits = model.forward_from_layer(leaf, layer, base)
    elif hook == "resid_mid":
        logits = from_mid(leaf)
    elif hook == "resid_post":
        logits = model.forward_from_layer(leaf, layer + 1, base)
    elif hook == "attn_out":
        logits = from_mid(pre + leaf)
    elif hook == "mlp_out":
        logits = model.forward_from_layer(mid + leaf, layer + 1, base)
    elif hook == "z":
        attn_out = torch.einsum("bphd,hdm->bpm", leaf, core.W_O[layer]) + core.b_O[layer]
        logits = from_mid(pre + attn_out)
    elif hook == "mlp_post":
        logits = model.forward_from_layer(mid + leaf @ core.W_out[layer] + core.b_out[layer],
                                          layer + 1, base)  # fmt: skip
    else:
        raise AssertionError(hook)
    return torch.autograd.grad(metric(logits).sum(), leaf)[0]


def reference_sweep(model, clean, corrupt, hook, by, direction="denoise", layer=None):
    """The first-order estimate, one location at a time: raw metric ``[*sizes in by, B]``."""
    base, source = (corrupt, clean) if direction == "denoise" else (clean, corrupt)
    with torch.no_grad():
        base_metric = metric(model(base))
    layers = list(range(model.cfg.n_layers)) if "layer" in by else [layer]

    def name_of(lay):
        return EMBED_HOOK[hook] if hook in EMBED_HOOK else CACHE_NAME[hook].format(lay)

    acts = {}
    for lay in layers:
        name = name_of(lay)
        _, base_cache = model.run_with_cache(base, names_filter=[name])
        _, source_cache = model.run_with_cache(source, names_filter=[name])
        grad = reference_gradient(model, base, hook, lay)
        acts[lay] = (source_cache[name] - base_cache[name], grad)
    example = acts[layers[0]][0]
    sizes = {
        "layer": len(layers),
        "pos": example.shape[2] if hook == "pattern" else example.shape[1],
        "head": model.cfg.n_heads,
        "neuron": example.shape[-1],
    }
    out = torch.zeros(*[sizes[a] for a in by], base.batch_size)
    for idx in itertools.product(*[range(sizes[a]) for a in by]):
        loc = dict(zip(by, idx, strict=True))
        delta, grad = acts[layers[loc.get("layer", 0)]]
        index = (slice(None), *location_index(hook, loc))
        terms = (delta[index] * grad[index]).reshape(base.batch_size, -1)
        out[idx] = base_metric + terms.sum(-1)
    return out


@pytest.mark.parametrize(("hook", "by", "layer"), SWEEP_CASES, ids=lambda v: str(v))
def test_every_sweep_matches_the_autograd_reference(model, pair, hook, by, layer):
    clean, corrupt = pair
    expected = reference_sweep(model, clean, corrupt, hook, by, layer=layer)
    raw = attribution_patching(model, clean, corrupt, metric, hook, by, normalize=False,
                               layer=layer)  # fmt: skip
    torch.testing.assert_close(raw.info["per_pair"], expected, atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(raw.values, expected.mean(-1), atol=ATOL, rtol=1e-5)
    exact = activation_patching(model, clean, corrupt, metric, hook, by, normalize=False,
                                layer=layer, show_progress=False)  # fmt: skip
    assert raw.axes == exact.axes and raw.labels == exact.labels
    for key in ("clean_metric", "corrupt_metric"):
        torch.testing.assert_close(raw.info[key], exact.info[key], atol=ATOL, rtol=0)
    for key in ("hook", "hook_names", "direction", "normalize", "layer"):
        assert raw.info[key] == exact.info[key]


@pytest.mark.parametrize(
    ("hook", "by"),
    [("resid_mid", ("layer", "pos")), ("z", ("layer", "head")), ("time_embed", ("pos",)),
     ("pattern", ("layer", "head", "pos")), ("k", ("layer", "head"))],
)  # fmt: skip
def test_noise_direction_matches_the_autograd_reference(model, pair, hook, by):
    clean, corrupt = pair
    expected = reference_sweep(model, clean, corrupt, hook, by, direction="noise")
    raw = attribution_patching(model, clean, corrupt, metric, hook, by, "noise", normalize=False)
    torch.testing.assert_close(raw.info["per_pair"], expected, atol=ATOL, rtol=1e-5)


def test_resid_mid_gradient_is_the_residual_streams_not_the_mlp_inputs(model, pair):
    """``hook_resid_mid`` is the residual stream (its gradient has the skip path);
    ``ln2.hook_in`` is the MLP's input only, whose gradient misses it."""
    assert model.hook_dict["blocks.0.hook_resid_mid"] is not model.hook_dict["blocks.0.ln2.hook_in"]
    assert gradient_hook_name("resid_mid", 0) == "blocks.0.hook_attn_out"
    _, corrupt = pair
    full = reference_gradient(model, corrupt, "resid_mid", 0)
    grads = {}
    for name in ("blocks.0.hook_resid_mid", "blocks.0.ln2.hook_in"):
        _, cache = model.run_with_cache(corrupt, names_filter=[name])
        delta = torch.zeros_like(cache[name], requires_grad=True)
        logits = model.run_with_hooks(
            corrupt, fwd_hooks=[(name, lambda act, hook, d=delta: act + d)]
        )
        grads[name] = torch.autograd.grad(metric(logits).sum(), delta)[0]
    torch.testing.assert_close(grads["blocks.0.hook_resid_mid"], full, atol=1e-5, rtol=1e-5)
    post = reference_gradient(model, corrupt, "resid_post", 0)
    mlp_only = grads["blocks.0.ln2.hook_in"]
    torch.testing.assert_close(full, post + mlp_only, atol=1e-5, rtol=1e-5)
    assert (full - mlp_only).abs().max() > 1e-2  # the MLP input's gradient alone would be wrong


# ------------------------------------------------------------- exact where affine
def _zero_weights(model, layers, parts):
    """Zero the weights of ``parts`` (q, k, fc_out) in ``layers`` of a native bridge."""
    pattern = re.compile(r"core\.blocks\.(\d+)\..*\.(q|k|fc_out)\._original_component\.weight$")
    hit = 0
    with torch.no_grad():
        for name, param in model.named_parameters():
            found = pattern.match(name)
            if found and int(found[1]) in layers and found[2] in parts:
                param.zero_()
                hit += 1
    assert hit == len(layers) * len(parts)
    return model


def affine_model(kind: str):
    """A model (no LayerNorm anywhere) where some patches act affinely on the metric.

    * ``"last"``: the last layer's residual stream after attention is mapped to the
      logits by an MLP: resid_post / mlp_out / mlp_post of the last layer are affine.
    * ``"last_attention"``: the last layer's MLP writes a constant (``W_out = 0``): its
      pattern, v, z, attn_out and resid_mid act affinely (z = pattern @ v is linear in
      each given the other).
    * ``"all"``: every attention pattern is uniform (``W_Q = W_K = 0``) and every MLP
      writes a constant: the whole model is affine in its embeddings.
    """
    model = build_model(d_mlp=8, normalization=None)
    if kind == "last_attention":
        _zero_weights(model, [1], ["fc_out"])
    if kind == "all":
        _zero_weights(model, [0, 1], ["q", "k", "fc_out"])
    return model


LAST_LAYER_AFFINE = {
    "last": ["resid_post", "mlp_out", "mlp_post"],
    "last_attention": ["pattern", "v", "z", "attn_out", "resid_mid", "resid_post"],
}


@pytest.mark.parametrize("kind", list(LAST_LAYER_AFFINE))
@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_exact_where_the_metric_is_affine_in_the_last_layer(pair, kind, direction):
    model = affine_model(kind)
    for hook in LAST_LAYER_AFFINE[kind]:
        for by in PATCHING_SWEEPS[hook]:
            kwargs = dict(direction=direction, normalize=False, layer=None)
            if hook == "mlp_post":
                kwargs["layer"] = 1
            est = attribution_patching(model, *pair, metric, hook, by, **kwargs)
            exact = activation_patching(model, *pair, metric, hook, by, show_progress=False,
                                        **kwargs)  # fmt: skip
            last = (lambda v: v[1]) if "layer" in by else (lambda v: v)
            torch.testing.assert_close(
                last(est.info["per_pair"]), last(exact.info["per_pair"]), atol=1e-4, rtol=0
            )
            spread = (last(exact.values) - exact.info["corrupt_metric"].mean()).abs().max()
            assert spread > 1e-3, f"{hook} {by}: the patch should matter"


@pytest.mark.parametrize(("hook", "by", "layer"), SWEEP_CASES, ids=lambda v: str(v))
def test_exact_for_every_sweep_of_an_affine_model(pair, hook, by, layer):
    model = affine_model("all")
    for normalize, fn in ((False, metric), (True, metric), (False, scalar_metric)):
        est = attribution_patching(model, *pair, fn, hook, by, normalize=normalize, layer=layer)
        exact = activation_patching(model, *pair, fn, hook, by, normalize=normalize,
                                    layer=layer, show_progress=False)  # fmt: skip
        torch.testing.assert_close(est.values, exact.values, atol=1e-4, rtol=0)
        assert (est.info["per_pair"] is None) == (exact.info["per_pair"] is None)


# ------------------------------------------------------------------- invariants
def test_identical_activations_give_exactly_the_base_metric(model):
    """Only the RTG differs: the state, action and time embeddings, and layer 0's residual
    stream away from the RTG tokens, are identical in both runs."""
    clean = build_batch(N_PAIRS, seed=10)
    corrupt = clean.replace(rtg=torch.zeros_like(clean.rtg))
    with torch.no_grad():
        base = metric(model(corrupt))
    for hook in ("state_embed", "action_embed", "time_embed"):
        raw = attribution_patching(model, clean, corrupt, metric, hook, ("pos",), normalize=False)
        assert torch.equal(raw.info["per_pair"], base.expand_as(raw.info["per_pair"]))
        restored = attribution_patching(model, clean, corrupt, metric, hook, ("pos",))
        assert torch.equal(restored.values, torch.zeros_like(restored.values))
    raw = attribution_patching(model, clean, corrupt, metric, "resid_pre", normalize=False)
    not_rtg = [i for i, label in enumerate(raw.labels["pos"]) if not label.startswith("R")]
    layer0 = raw.info["per_pair"][0, not_rtg]
    assert torch.equal(layer0, base.expand_as(layer0))
    assert (raw.info["per_pair"][0, [0, 3, 6, 9]] - base).abs().min() > 0


def test_positions_add_up_to_the_whole_activations_estimate(model, pair):
    clean, corrupt = pair
    raw = attribution_patching(model, clean, corrupt, metric, "resid_pre", normalize=False)
    grad = reference_gradient(model, corrupt, "resid_pre", 0)
    _, c_cache = model.run_with_cache(clean, names_filter=["blocks.0.hook_resid_pre"])
    _, k_cache = model.run_with_cache(corrupt, names_filter=["blocks.0.hook_resid_pre"])
    delta = c_cache["blocks.0.hook_resid_pre"] - k_cache["blocks.0.hook_resid_pre"]
    whole = (delta * grad).sum((1, 2))  # the first-order change of patching everything
    base = raw.info["corrupt_metric"]
    torch.testing.assert_close((raw.info["per_pair"][0] - base).sum(0), whole, atol=1e-4, rtol=0)


def test_finer_sweeps_add_up_to_coarser_ones_and_axes_only_reorder(model, pair):
    clean, corrupt = pair
    coarse = attribution_patching(model, clean, corrupt, metric, "z", ("layer", "head"),
                                  normalize=False)  # fmt: skip
    fine = attribution_patching(model, clean, corrupt, metric, "z", ("layer", "head", "pos"),
                                normalize=False)  # fmt: skip
    base = coarse.info["corrupt_metric"]
    torch.testing.assert_close(
        (fine.info["per_pair"] - base).sum(2) + base, coarse.info["per_pair"], atol=1e-5, rtol=0
    )
    swapped = attribution_patching(model, clean, corrupt, metric, "z", ("pos", "head", "layer"))
    ordered = attribution_patching(model, clean, corrupt, metric, "z", ("layer", "head", "pos"))
    assert swapped.axes == ("pos", "head", "layer")
    torch.testing.assert_close(swapped.values, ordered.values.permute(2, 1, 0))
    assert swapped.labels["pos"] == ordered.labels["pos"]


def test_normalised_values_are_the_mean_estimated_restored_fraction(model, pair):
    clean, corrupt = pair
    for direction in ("denoise", "noise"):
        raw = attribution_patching(model, clean, corrupt, metric, "z", ("layer", "head"),
                                   direction, normalize=False)  # fmt: skip
        restored = attribution_patching(model, clean, corrupt, metric, "z", ("layer", "head"),
                                        direction)  # fmt: skip
        c, k = raw.info["clean_metric"], raw.info["corrupt_metric"]
        expected = (raw.info["per_pair"] - k) / (c - k)
        torch.testing.assert_close(restored.info["per_pair"], expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(restored.values, expected.mean(-1), atol=1e-5, rtol=1e-5)
        assert restored.metric_name == "restored fraction of metric"
    with torch.no_grad():
        torch.testing.assert_close(raw.info["clean_metric"], metric(model(clean)))
        torch.testing.assert_close(raw.info["corrupt_metric"], metric(model(corrupt)))


def test_a_scalar_metric_sums_the_pairs_first_order_terms(model, pair):
    per_pair = attribution_patching(model, *pair, metric, "resid_pre", normalize=False)
    raw = attribution_patching(model, *pair, scalar_metric, "resid_pre", normalize=False)
    torch.testing.assert_close(raw.values, per_pair.values, atol=1e-5, rtol=0)
    assert raw.info["per_pair"] is None and raw.info["clean_metric"].shape == (1,)
    restored = attribution_patching(model, *pair, scalar_metric, "resid_pre")
    clean, corrupt = (per_pair.info[k].mean() for k in ("clean_metric", "corrupt_metric"))
    expected = (per_pair.values - corrupt) / (clean - corrupt)
    torch.testing.assert_close(restored.values, expected, atol=1e-4, rtol=0)


def test_no_parameter_gets_a_gradient_and_frozen_models_work(pair):
    model = build_model(d_mlp=8)
    expected = attribution_patching(model, *pair, metric, "z", ("layer", "head"))
    assert all(param.grad is None for param in model.parameters())
    model.requires_grad_(False)
    with torch.no_grad():  # a caller's no_grad does not stop the backward
        frozen = attribution_patching(model, *pair, metric, "z", ("layer", "head"))
    torch.testing.assert_close(frozen.values, expected.values)
    assert not model_has_hooks(model)


def test_hooks_attached_by_the_user_stay_in_effect(model, pair):
    """A hook the user attached applies to both runs and stays attached afterwards."""
    clean, corrupt = pair

    def ablate_head(act, hook):
        act = act.clone()
        act[:, :, 2] = 0.0
        return act

    with model.hooks(fwd_hooks=[("blocks.0.attn.hook_z", ablate_head)]):
        hooked = attribution_patching(model, clean, corrupt, metric, "z", ("layer", "head"),
                                      normalize=False)  # fmt: skip
        assert model_has_hooks(model)
        with torch.no_grad():
            torch.testing.assert_close(hooked.info["clean_metric"], metric(model(clean)))
    torch.testing.assert_close(hooked.values[0, 2], hooked.info["corrupt_metric"].mean())
    assert not model_has_hooks(model)


# ---------------------------------------------------------------------- compare
def test_compare_reports_the_exact_sweep_its_rank_correlation_and_max_error(model, pair):
    clean, corrupt = pair
    result = attribution_patching(model, clean, corrupt, metric, "z", ("layer", "head", "pos"),
                                  compare=True, show_progress=False)  # fmt: skip
    exact = activation_patching(model, clean, corrupt, metric, "z", ("layer", "head", "pos"))
    torch.testing.assert_close(result.info["exact"].values, exact.values)
    rho = spearmanr(result.values.flatten().numpy(), exact.values.flatten().numpy()).statistic
    assert result.info["rank_correlation"] == pytest.approx(rho, abs=1e-9)
    error = (result.values - exact.values).abs().max().item()
    assert result.info["max_abs_error"] == pytest.approx(error, abs=1e-7)
    assert result.info["rank_correlation"] > 0.5  # a tiny random model: a loose sanity bar
    plain = attribution_patching(model, clean, corrupt, metric, "z", ("layer", "head", "pos"))
    assert "exact" not in plain.info and "rank_correlation" not in plain.info
    torch.testing.assert_close(plain.values, result.values)


def test_rank_correlation_matches_scipy_with_ties():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (40,), generator=g).float()  # many ties
    b = a + torch.randn(40, generator=g)
    for x, y in ((a, b), (a.reshape(5, 8), b.reshape(5, 8)), (b, -b)):
        rho = spearmanr(x.flatten().numpy(), y.flatten().numpy()).statistic
        assert rank_correlation(x, y) == pytest.approx(rho, abs=1e-9)
    assert math.isnan(rank_correlation(torch.ones(4), torch.arange(4.0)))
    with pytest.raises(DTLensError, match="same shape"):
        rank_correlation(torch.ones(4), torch.ones(5))


# ------------------------------------------------------------------------ errors
def _same_error(call_exact, call_fast, error=DTLensError):
    with pytest.raises(error) as exact:
        call_exact()
    with pytest.raises(error) as fast:
        call_fast()
    assert type(fast.value) is type(exact.value) and str(fast.value) == str(exact.value)


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        (("resid",), {}, DTLensError),
        (("resid_pre", ("layer", "head")), {}, DTLensError),
        (("rtg_embed", "pos"), {}, DTLensError),
        (("mlp_post", ("neuron",)), {}, ConfigError),
        (("mlp_post", ("neuron",)), {"layer": 2}, ConfigError),
        (("resid_pre",), {"layer": 0}, ConfigError),
        (("resid_pre",), {"direction": "up"}, ConfigError),
        (("resid_pre",), {"normalize": 1}, ConfigError),
    ],
)
def test_bad_arguments_raise_as_activation_patching_does(model, args, kwargs, error):
    clean, corrupt = make_pair(False)
    _same_error(
        lambda: activation_patching(model, clean, corrupt, metric, *args, **kwargs),
        lambda: attribution_patching(model, clean, corrupt, metric, *args, **kwargs),
        error,
    )


def test_bad_batches_metrics_and_options_raise(model):
    clean, corrupt = make_pair(False)
    short = build_batch(N_PAIRS, n_steps=3)
    _same_error(lambda: activation_patching(model, clean, short, metric),
                lambda: attribution_patching(model, clean, short, metric), BatchError)  # fmt: skip
    wrong_shape = lambda logits: logits[:, -1]  # noqa: E731
    _same_error(lambda: activation_patching(model, clean, corrupt, wrong_shape),
                lambda: attribution_patching(model, clean, corrupt, wrong_shape))  # fmt: skip
    _same_error(lambda: activation_patching(model, clean, clean, metric),
                lambda: attribution_patching(model, clean, clean, metric))  # fmt: skip
    with pytest.raises(DTLensError, match="non-finite values"):
        attribution_patching(model, clean, corrupt, lambda logits: logits[:, -1, 0] / 0)
    argmax = lambda logits: (logits[:, -1].argmax(-1) == 0).float()  # noqa: E731
    with pytest.raises(DTLensError, match="needs a differentiable metric"):
        attribution_patching(model, clean, corrupt, argmax)
    with pytest.raises(ConfigError, match=r"max_batch must be a positive int.*got 0"):
        attribution_patching(model, clean, corrupt, metric, max_batch=0)
    with pytest.raises(ConfigError, match="compare must be True or False"):
        attribution_patching(model, clean, corrupt, metric, compare="yes")
    with pytest.raises(DTLensError, match="unknown patching hook"):
        gradient_hook_name("resid", 0)


def test_exported_from_the_package_and_the_top_level():
    from dtlens.analysis import attribution_patching as from_analysis
    from dtlens.analysis.patching import attribution_patching as from_patching

    assert dtlens.attribution_patching is attribution_patching
    assert from_analysis is attribution_patching and from_patching is attribution_patching
