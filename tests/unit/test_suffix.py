"""Suffix re-runs against the model's own forward (``forward_from_layer`` on the full window)."""

from __future__ import annotations

import pytest
import torch

from dtlens.errors import BatchError
from dtlens.model.suffix import build_prefix_cache, forward_suffix, model_has_hooks
from tests.conftest import build_batch, build_model

ATOL = 1e-5

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module", params=["layernorm_gelu", "gated_relu"])
def model(request):
    if request.param == "gated_relu":  # the original MemoryDT checkpoint's MLP
        return build_model(gated_mlp=True, act_fn="relu")
    return build_model()


@pytest.fixture(scope="module", params=["unpadded", "padded"])
def batch(request):
    if request.param == "padded":
        return build_batch(3, n_steps=2, seed=4).left_pad(4, pad_action=7)
    return build_batch(3, seed=4)


def _changed_from(base, first_pos, seed):
    """``base`` with random changes at positions ``first_pos..`` only."""
    g = torch.Generator().manual_seed(seed)
    changed = base.clone()
    changed[:, first_pos:] += torch.randn(changed[:, first_pos:].shape, generator=g)
    return changed


@pytest.mark.parametrize("first_pos", [0, 1, 6, 10])
@pytest.mark.parametrize("start", [(0, "pre"), (0, "mid"), (1, "pre"), (1, "mid"), (2, "pre")])
def test_suffix_equals_the_full_forward_of_a_changed_suffix(model, batch, first_pos, start):
    """Rows that change only from ``first_pos`` get the logits of a full forward."""
    layer, point = start
    pair = torch.tensor([2, 0, 2, 1])  # repeated and reordered rows
    with torch.no_grad():
        _, cache = model.run_with_cache(batch)
        if layer == model.cfg.n_layers:
            name = f"blocks.{layer - 1}.hook_resid_post"
        else:
            name = f"blocks.{layer}.hook_resid_{point}"
        resid = _changed_from(cache[name][pair], first_pos, seed=first_pos)
        rows = batch[pair]
        if point == "mid":
            block = model.core.blocks[layer]
            post = resid + block.mlp(block.ln2(resid))
            expected = model.forward_from_layer(post, layer + 1, rows)
        else:
            expected = model.forward_from_layer(resid, layer, rows)
        prefix = build_prefix_cache(model, batch)
        got = forward_suffix(
            model, prefix, resid[:, first_pos:], layer, first_pos, pair, point == "mid"
        )
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def test_unchanged_suffix_reproduces_the_base_logits(model, batch):
    with torch.no_grad():
        _, cache = model.run_with_cache(batch)
        prefix = build_prefix_cache(model, batch)
        pair = torch.arange(batch.batch_size)
        got = forward_suffix(model, prefix, cache["blocks.0.hook_resid_pre"][:, 4:], 0, 4, pair)
        torch.testing.assert_close(got, model(batch), atol=ATOL, rtol=0)
        torch.testing.assert_close(prefix.logits, model(batch), atol=0, rtol=0)


def test_prefix_keys_are_the_attention_inputs_projected(batch):
    """keys = LN1(resid_pre) W_K + b_K per head, written here with the TL weights."""
    model = build_model()
    with torch.no_grad():
        _, cache = model.run_with_cache(batch)
        prefix = build_prefix_cache(model, batch)
        x = model.core.blocks[1].ln1(cache["blocks.1.hook_resid_pre"])
        expected = torch.einsum("bpd,hde->bhpe", x, model.core.W_K[1]) + model.core.b_K[1][:, None]
    torch.testing.assert_close(prefix.keys[1], expected, atol=ATOL, rtol=0)


def test_suffix_of_the_wrong_length_is_refused(model, batch):
    prefix = build_prefix_cache(model, batch)
    resid = torch.zeros(3, 5, model.cfg.d_model)
    with pytest.raises(
        BatchError, match=r"positions 4\.\.10: shape \[row, 7, d_model\], got \[3, 5"
    ):
        forward_suffix(model, prefix, resid, 0, 4, torch.arange(3))


def test_model_has_hooks_sees_attached_hooks():
    model = build_model()
    assert not model_has_hooks(model)
    with model.hooks(fwd_hooks=[("blocks.0.attn.hook_z", lambda act, hook: act)]):
        assert model_has_hooks(model)
    assert not model_has_hooks(model)


@pytest.mark.parametrize("kind", ["q", "k", "v"])
def test_head_inputs_replace_heads_like_a_hook_on_q_k_v(model, batch, kind):
    """Replacing heads 0 and 2's q/k/v at layer 1 = the model's forward with that hook."""
    g = torch.Generator().manual_seed(3)
    n_pos, d_head = 11, model.cfg.d_head
    new = torch.randn(batch.batch_size, n_pos, 2, d_head, generator=g)

    def replace(act, hook):
        act = act.clone()
        act[:, :, [0, 2]] = new
        return act

    with torch.no_grad():
        expected = model.run_with_hooks(batch, fwd_hooks=[(f"blocks.1.attn.hook_{kind}", replace)])
        _, cache = model.run_with_cache(batch)
        prefix = build_prefix_cache(model, batch)
        pair = torch.arange(batch.batch_size)
        got = forward_suffix(
            model, prefix, cache["blocks.1.hook_resid_pre"], 1, 0, pair,
            head_inputs={(1, kind): ([0, 2], new)},
        )  # fmt: skip
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def test_a_core_the_plain_re_run_does_not_implement_is_named():
    """A native model with a logit soft cap (no dtlens config builds one) is refused by
    name, not re-run without it."""
    from dtlens.errors import ConfigError
    from dtlens.model.suffix import build_prefix_cache
    from dtlens.model.tl_core import native_parts

    model = build_model()
    assert len(native_parts(model.core)[0]) == model.cfg.n_layers  # a dtlens core: plain
    model.core.original_model.output_logits_soft_cap = 30.0
    with pytest.raises(ConfigError, match="logit soft cap"):
        native_parts(model.core)
    with pytest.raises(ConfigError, match="path_patching or activation patching"):
        build_prefix_cache(model, build_batch())
