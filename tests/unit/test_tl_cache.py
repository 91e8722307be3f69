"""The cache and intervention calls a TransformerLens user makes, on a decision transformer.

``cache["resid_mid", 0]`` shorthands, the masked pre-softmax ``hook_attn_scores``, the
residual decompositions, ``logit_attrs`` (against a hand computation with the final
LayerNorm's scale and weight) and a ``hook_resid_mid`` write (against a hand-computed
forward). The other calls of docs/tl_compat.md are in tests/unit/test_tl_compat.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformer_lens.ActivationCache import ActivationCache

from dtlens.analysis.patching.engine import forward_from_mid
from tests.conftest import build_batch, build_model

ATOL = 1e-5


@pytest.fixture(scope="module")
def model():
    return build_model()


@pytest.fixture(scope="module")
def batch():
    return build_batch()


def hand_ln(x, ln, eps=1e-5):
    """LayerNorm by hand, with the module's weight and bias."""
    x = x - x.mean(-1, keepdim=True)
    return x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt() * ln.weight + ln.bias


def hand_mlp(model, layer, x):
    """``gelu(x W_in + b_in) W_out + b_out`` from the model's weights."""
    return (
        F.gelu(x @ model.W_in[layer] + model.b_in[layer]) @ model.W_out[layer] + model.b_out[layer]
    )


# -------------------------------------------------------------------- cache
def test_cache_shorthand_and_resid_mid(model, batch):
    _, cache = model.run_with_cache(batch)
    assert torch.equal(cache["resid_pre", 1], cache["blocks.1.hook_resid_pre"])
    assert torch.equal(cache["pattern", -1], cache["blocks.1.attn.hook_pattern"])
    assert torch.equal(cache["scale"], cache["ln_final.hook_scale"])
    mid = cache["blocks.0.hook_resid_pre"] + cache["blocks.0.hook_attn_out"]
    torch.testing.assert_close(cache["resid_mid", 0], mid)
    torch.testing.assert_close(cache["blocks.0.ln2.hook_in"], mid)


def test_attn_scores_are_the_masked_pre_softmax_scores(model, batch):
    _, cache = model.run_with_cache(batch)
    q, k = cache["blocks.1.attn.hook_q"], cache["blocks.1.attn.hook_k"]
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / model.cfg.d_head**0.5
    scores = scores.masked_fill(torch.ones(11, 11).triu(1).bool(), float("-inf"))
    torch.testing.assert_close(cache["attn_scores", 1], scores)
    torch.testing.assert_close(cache["pattern", 1], scores.softmax(-1))


def test_writing_attn_scores_changes_the_pattern(model, batch):
    def flat(act, hook):
        return torch.where(act.isinf(), act, torch.zeros_like(act))

    _, cache = model.run_with_cache(batch)
    with model.hooks(fwd_hooks=[("blocks.0.attn.hook_attn_scores", flat)]):
        _, hooked = model.run_with_cache(batch, names_filter="blocks.0.attn.hook_pattern")
    uniform = torch.ones(11, 11).tril() / torch.arange(1, 12)[:, None]
    torch.testing.assert_close(hooked["pattern", 0], uniform.expand(2, 4, 11, 11))
    assert not torch.allclose(cache["pattern", 0], hooked["pattern", 0])


def test_decompositions_sum_to_the_residual_stream(model, batch):
    _, cache = model.run_with_cache(batch)
    final = cache["blocks.1.hook_resid_post"]
    components, labels = cache.decompose_resid(return_labels=True)
    assert labels[:2] == ["embed", "pos_embed"]
    torch.testing.assert_close(components.sum(0), final, atol=ATOL, rtol=0)
    full = cache.get_full_resid_decomposition(expand_neurons=False)
    torch.testing.assert_close(full.sum(0), final, atol=ATOL, rtol=0)
    heads = cache.stack_head_results(layer=1)  # the heads of layer 0
    attn_out = cache["blocks.0.hook_attn_out"] - model.b_O[0]
    torch.testing.assert_close(heads.sum(0), attn_out, atol=ATOL, rtol=0)
    accumulated = cache.accumulated_resid(incl_mid=True)
    torch.testing.assert_close(accumulated[1], cache["blocks.0.hook_resid_mid"])
    scaled = cache.apply_ln_to_stack(final[None], layer=-1)[0]
    centred = final - final.mean(-1, keepdim=True)
    torch.testing.assert_close(scaled, centred / cache["ln_final.hook_scale"])


def hand_logit_attrs(model, cache, stack, direction):
    """(centred component / final scale * ln_final.w) . direction, per component."""
    w = model.core.ln_final.original_component.weight
    centred = stack - stack.mean(-1, keepdim=True)
    return ((centred / cache["ln_final.hook_scale"]) * w) @ direction


def test_logit_attrs_apply_the_final_layer_norm(model, batch):
    logits, cache = model.run_with_cache(batch)
    stack = cache.decompose_resid()
    attrs = cache.logit_attrs(stack, tokens=2)
    expected = hand_logit_attrs(model, cache, stack, model.W_U[:, 2])
    torch.testing.assert_close(attrs, expected, atol=ATOL, rtol=0)
    ln_b = model.core.ln_final.original_component.bias
    logit_from_resid = logits[..., 2] - model.b_U[2] - ln_b @ model.W_U[:, 2]
    torch.testing.assert_close(attrs.sum(0), logit_from_resid, atol=ATOL, rtol=0)
    plain = ActivationCache(cache.cache_dict, model.core).logit_attrs(stack, tokens=2)
    assert (plain - attrs).abs().max() > 1e-2  # TransformerLens' own, without ln_final.w


def test_logit_attrs_of_a_logit_difference_per_example(model, batch):
    logits, cache = model.run_with_cache(batch)
    good, bad = torch.tensor([1, 4]), torch.tensor([0, 0])
    attrs = cache.logit_attrs(
        cache.decompose_resid(pos_slice=-1), tokens=good, incorrect_tokens=bad, pos_slice=-1
    )
    direction = model.W_U[:, good] - model.W_U[:, bad]  # [d_model, batch]
    stack = cache.decompose_resid()
    every = hand_logit_attrs(model, cache, stack, direction)  # [component, batch, pos, batch]
    expected = every[:, torch.arange(2), -1, torch.arange(2)].squeeze(-1)
    torch.testing.assert_close(attrs.reshape(expected.shape), expected, atol=ATOL, rtol=0)
    rows = torch.arange(2)
    diff = logits[rows, -1, good] - logits[rows, -1, bad]
    ln_b = model.core.ln_final.original_component.bias
    from_resid = diff - (model.b_U[good] - model.b_U[bad]) - ln_b @ direction
    torch.testing.assert_close(attrs.sum(0).flatten(), from_resid, atol=ATOL, rtol=0)


def test_a_sliced_cache_keeps_the_corrected_logit_attrs(model, batch):
    _, cache = model.run_with_cache(batch)
    first = cache.apply_slice_to_batch_dim(0)
    stack = first.decompose_resid(pos_slice=-1)
    torch.testing.assert_close(
        first.logit_attrs(stack, tokens=2, pos_slice=-1, has_batch_dim=False),
        cache.logit_attrs(cache.decompose_resid(pos_slice=-1), tokens=2, pos_slice=-1)[:, 0],
    )


def test_logit_attrs_without_a_final_norm_weight_are_transformer_lens_own(batch):
    pre = build_model(normalization="LNPre")
    _, cache = pre.run_with_cache(batch)
    stack = cache.decompose_resid()
    ours = cache.logit_attrs(stack, tokens=1)
    torch.testing.assert_close(
        ours, ActivationCache(cache.cache_dict, pre.core).logit_attrs(stack, 1)
    )


# ------------------------------------------------------------- interventions
def test_writing_resid_mid_changes_the_residual_stream(model, batch):
    """A write to hook_resid_mid feeds both the MLP and the skip connection (TL's meaning)."""
    d = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0))
    _, cache = model.run_with_cache(batch)
    ln2 = model.core.blocks[0].ln2.original_component
    mid = cache["blocks.0.hook_resid_mid"] + d
    resid_post = mid + hand_mlp(model, 0, hand_ln(mid, ln2))
    expected = model.forward_from_layer(resid_post, 1, batch)
    patched = model.run_with_hooks(batch, [("blocks.0.hook_resid_mid", lambda act, hook: act + d)])
    torch.testing.assert_close(patched, expected, atol=ATOL, rtol=0)
    # ln2.hook_in remains the MLP's input only (what HookedTransformer calls hook_mlp_in)
    mlp_only = cache["blocks.0.hook_resid_mid"] + hand_mlp(model, 0, hand_ln(mid, ln2))
    expected = model.forward_from_layer(mlp_only, 1, batch)
    patched = model.run_with_hooks(batch, [("blocks.0.ln2.hook_in", lambda act, hook: act + d)])
    torch.testing.assert_close(patched, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(
        forward_from_mid(model, mid, 0, batch),
        model.run_with_hooks(batch, [("blocks.0.hook_resid_mid", lambda act, hook: act + d)]),
        atol=ATOL,
        rtol=0,
    )
