"""The calls a TransformerLens user makes, on a decision transformer (issue 14, section 1).

Each check is written from TransformerLens' documentation (HookedTransformer /
HookedRootModule / ActivationCache / ``transformer_lens.patching``) with an
expectation computed independently of the call: weights against the raw ``nn.Linear``
weights, caches against a plain run, the loss against a hand-written cross-entropy. The
cache and intervention calls are in tests/unit/test_tl_cache.py, TransformerLens'
patching sweeps in tests/unit/test_compat_patching.py.

:data:`CALLS` lists every call checked and what it does ("works", or "raises" a
DTLensError naming what to call instead); docs/tl_compat.md tabulates the same
calls (checked by ``test_the_docs_table_lists_every_call``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformer_lens.ActivationCache import ActivationCache
from transformer_lens.FactoredMatrix import FactoredMatrix

from dtlens.errors import BatchError, DTLensError, HookNameError
from tests.conftest import build_batch, build_model

ATOL = 1e-5
DOCS = Path(__file__).resolve().parents[2] / "docs" / "tl_compat.md"

#: Every call this module checks -> "works" or "raises" (a DTLensError naming the fix).
CALLS = {
    # weights and components
    **{
        f"model.{w}": "works"
        for w in ["W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O", "W_in", "W_out"]
    },
    **{
        f"model.{w}": "works"
        for w in ["b_in", "b_out", "W_pos", "W_U", "b_U", "QK", "OV", "W_gate"]
    },
    "model.b_in (gated MLP)": "raises",
    "model.W_gate (plain MLP)": "raises",
    "model.W_E": "raises",
    "model.blocks / ln_final / unembed / pos_embed": "works",
    "model.tokens_to_residual_directions(action)": "works",
    # hooks
    "model.hook_dict[name].name": "works",
    "hook.name inside a hook function": "works",
    "model.run_with_hooks(batch, fwd_hooks=..., return_type=...)": "works",
    "model.hooks(fwd_hooks=...)": "works",
    "model.add_hook(name or filter, fn) / model.reset_hooks()": "works",
    # run_with_cache
    "model.run_with_cache(batch)": "works",
    "run_with_cache(names_filter=str, list or callable)": "works",
    "run_with_cache(names_filter=unknown name)": "raises",
    "run_with_cache(device=)": "works",
    "run_with_cache(remove_batch_dim=True), one window": "works",
    "run_with_cache(remove_batch_dim=True), several windows": "raises",
    "run_with_cache(return_cache_object=False)": "works",
    "run_with_cache(pos_slice=)": "works",
    "run_with_cache(incl_bwd=True, return_type='loss')": "works",
    "run_with_cache(incl_bwd=True), non-scalar output": "raises",
    "run_with_cache(reset_hooks_end=False)": "works",
    # forward
    "model(batch, return_type='logits' or None)": "works",
    "model(batch, return_type='loss' or 'both')": "works",
    "model(batch, return_type='loss', loss_per_token=True)": "works",
    "model(batch, return_type=other)": "raises",
    "model(batch, stop_at_layer=L)": "works",
    "model(x, start_at_layer=L)": "raises",
    "model(batch, attention_mask=...)": "raises",
    "model(tokens tensor)": "raises",
    # cache
    "cache['resid_pre', 0] (get_act_name shorthand)": "works",
    "cache['blocks.L.attn.hook_attn_scores']": "works",
    "cache['blocks.L.hook_resid_mid']": "works",
    "cache.accumulated_resid(...)": "works",
    "cache.decompose_resid(...)": "works",
    "cache.stack_head_results(...)": "works",
    "cache.get_full_resid_decomposition(...)": "works",
    "cache.apply_ln_to_stack(...)": "works",
    "cache.logit_attrs(...)": "works",
    "cache.apply_slice_to_batch_dim(...)": "works",
    # interventions
    "writing blocks.L.hook_resid_mid": "works",
    "writing blocks.L.attn.hook_attn_scores": "works",
    # text-model calls
    "model.to_str_tokens(batch)": "works",
    "model.to_tokens / to_string / to_single_token": "raises",
    "model.generate(...)": "raises",
    "model.set_use_attn_result(True)": "raises",
    "model.set_use_split_qkv_input(True) / set_use_attn_in(True)": "raises",
    # transformer_lens.patching through dtlens.compat
    **{
        f"patching.{name}": "works"
        for name in (
            "get_act_patch_resid_pre",
            "get_act_patch_resid_mid",
            "get_act_patch_attn_out",
            "get_act_patch_mlp_out",
            "get_act_patch_attn_head_out_by_pos",
            "get_act_patch_attn_head_q_by_pos",
            "get_act_patch_attn_head_k_by_pos",
            "get_act_patch_attn_head_v_by_pos",
            "get_act_patch_attn_head_pattern_by_pos",
            "get_act_patch_attn_head_pattern_dest_src_pos",
            "get_act_patch_attn_head_out_all_pos",
            "get_act_patch_attn_head_q_all_pos",
            "get_act_patch_attn_head_k_all_pos",
            "get_act_patch_attn_head_v_all_pos",
            "get_act_patch_attn_head_pattern_all_pos",
            "get_act_patch_block_every",
            "get_act_patch_attn_head_all_pos_every",
            "get_act_patch_attn_head_by_pos_every",
            "generic_activation_patch(reduce='mean' or 'none', baseline=True)",
        )
    },
    "patching.get_act_patch_direct_path": "raises",
}

#: HookedTransformer's hook names for a 2-layer LayerNorm model with a plain MLP.
HT_NAMES = ["hook_embed", "hook_pos_embed", "ln_final.hook_scale", "ln_final.hook_normalized"] + [
    f"blocks.{layer}.{name}"
    for layer in range(2)
    for name in (
        "hook_resid_pre",
        "ln1.hook_scale",
        "ln1.hook_normalized",
        "attn.hook_q",
        "attn.hook_k",
        "attn.hook_v",
        "attn.hook_attn_scores",
        "attn.hook_pattern",
        "attn.hook_z",
        "hook_attn_out",
        "hook_resid_mid",
        "ln2.hook_scale",
        "ln2.hook_normalized",
        "mlp.hook_pre",
        "mlp.hook_post",
        "hook_mlp_out",
        "hook_resid_post",
    )
]


@pytest.fixture(scope="module")
def model():
    return build_model()


@pytest.fixture(scope="module")
def batch():
    return build_batch()


def test_the_docs_table_lists_every_call():
    text = DOCS.read_text()
    missing = [call for call in CALLS if f"`{call}`" not in text]
    assert not missing, f"docs/tl_compat.md does not list {missing}"


# ------------------------------------------------------------------ weights
WEIGHTS = [
    "W_Q",
    "W_K",
    "W_V",
    "W_O",
    "b_Q",
    "b_K",
    "b_V",
    "b_O",
    "W_in",
    "W_out",
    "b_in",
    "b_out",
    "W_pos",
    "W_U",
    "b_U",
]


def _plain(module):
    return getattr(module, "original_component", module)


def test_weights_are_the_linear_layers_weights(model):
    """Independent of TransformerLens' views: every weight property is read off the plain
    torch modules by hand (W_Q[l, h] is head h's rows of q.weight, transposed, ...)."""
    d_head, native = model.cfg.d_head, model.core.original_model
    assert set(WEIGHTS) == {
        *(f"{w}_{x}" for w in "Wb" for x in "QKVO"), "W_in", "W_out", "b_in", "b_out",
        "W_pos", "W_U", "b_U",
    }  # fmt: skip
    for layer in range(model.cfg.n_layers):
        attn = native.layers[layer].attn
        for name in "QKV":
            linear = _plain(getattr(attn, name.lower()))
            for head in range(model.cfg.n_heads):
                rows = slice(head * d_head, (head + 1) * d_head)
                assert torch.equal(getattr(model, f"W_{name}")[layer, head], linear.weight[rows].T)
                assert torch.equal(getattr(model, f"b_{name}")[layer, head], linear.bias[rows])
        o = _plain(attn.o)
        for head in range(model.cfg.n_heads):
            rows = slice(head * d_head, (head + 1) * d_head)
            assert torch.equal(model.W_O[layer, head], o.weight[:, rows].T)
        assert torch.equal(model.b_O[layer], o.bias)
        mlp = _plain(native.layers[layer].mlp)
        assert torch.equal(model.W_in[layer], mlp.fc_in.weight.T)
        assert torch.equal(model.b_in[layer], mlp.fc_in.bias)
        assert torch.equal(model.W_out[layer], mlp.fc_out.weight.T)
        assert torch.equal(model.b_out[layer], mlp.fc_out.bias)
        for head in range(model.cfg.n_heads):
            w_q, w_k = model.W_Q[layer, head], model.W_K[layer, head]
            w_v, w_o = model.W_V[layer, head], model.W_O[layer, head]
            assert isinstance(model.QK, FactoredMatrix) and isinstance(model.OV, FactoredMatrix)
            torch.testing.assert_close(model.QK.AB[layer, head], w_q @ w_k.T)
            torch.testing.assert_close(model.OV.AB[layer, head], w_v @ w_o)
    head = native.head
    assert torch.equal(model.W_U, head.weight.T) and torch.equal(model.b_U, head.bias)
    assert torch.equal(model.W_pos, _plain(native.pos).weight)


def test_gated_mlp_weights():
    gated = build_model(gated_mlp=True)
    for layer in range(gated.cfg.n_layers):
        mlp = _plain(gated.core.original_model.layers[layer].mlp)
        assert torch.equal(gated.W_gate[layer], _plain(mlp.gate).weight.T)
        assert torch.equal(gated.W_in[layer], _plain(getattr(mlp, "in")).weight.T)
        assert torch.equal(gated.W_out[layer], _plain(mlp.out).weight.T)
    with pytest.raises(DTLensError, match="b_out"):
        gated.b_in  # noqa: B018
    with pytest.raises(DTLensError, match="W_in"):
        build_model().W_gate  # noqa: B018


def test_w_e_raises_naming_the_embeddings(model):
    with pytest.raises(DTLensError, match="state_embed"):
        model.W_E  # noqa: B018


def test_components_are_the_cores(model):
    assert model.blocks is model.core.blocks
    assert model.ln_final is model.core.ln_final
    assert model.unembed is model.core.unembed
    assert model.pos_embed is model.core.pos_embed
    assert torch.equal(model.blocks[1].attn.W_Q, model.W_Q[1])


def test_tokens_to_residual_directions_include_the_final_norm_weight(model):
    w = model.core.ln_final.original_component.weight
    torch.testing.assert_close(model.tokens_to_residual_directions(3), w * model.W_U[:, 3])
    many = model.tokens_to_residual_directions(torch.tensor([[0, 2], [1, 1]]))
    assert many.shape == (2, 2, model.cfg.d_model)
    torch.testing.assert_close(many[0, 1], w * model.W_U[:, 2])


# -------------------------------------------------------------------- hooks
def test_every_hook_is_named_as_in_transformer_lens(model):
    hook_dict = model.hook_dict
    for name in HT_NAMES:
        assert name in hook_dict, name
        assert hook_dict[name].name == name, (name, hook_dict[name].name)
    for key, hook in hook_dict.items():  # every spelling leads to a hook named as above
        assert hook_dict[hook.name] is hook, key
    assert hook_dict["blocks.0.hook_in"].name == "blocks.0.hook_resid_pre"
    assert hook_dict["blocks.1.attn.o.hook_in"].name == "blocks.1.attn.hook_z"


def test_a_hook_function_sees_the_transformer_lens_name(model, batch):
    seen = []

    def record(act, hook):
        seen.append(hook.name)

    model.run_with_hooks(
        batch,
        fwd_hooks=[("blocks.0.hook_in", record), (lambda n: n.endswith("mlp.out.hook_in"), record)],
    )
    assert seen == ["blocks.0.hook_resid_pre", "blocks.0.mlp.hook_post", "blocks.1.mlp.hook_post"]


def test_cache_keys_are_the_names_asked_for(model, batch):
    _, cache = model.run_with_cache(batch, names_filter=HT_NAMES)
    assert sorted(cache.keys()) == sorted(HT_NAMES)
    _, cache = model.run_with_cache(batch, names_filter=lambda n: n.endswith("hook_resid_pre"))
    assert sorted(cache.keys()) == ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"]
    _, full = model.run_with_cache(batch)
    assert set(HT_NAMES) <= set(full.keys())
    assert torch.equal(full["blocks.0.hook_in"], full["blocks.0.hook_resid_pre"])
    with pytest.raises(HookNameError, match="hook_resid_pre"):
        model.run_with_cache(batch, names_filter="blocks.0.hook_resid_pr")


def test_run_with_hooks_and_hooks_context_and_add_hook(model, batch):
    def zero(act, hook):
        return torch.zeros_like(act)

    expected = model.run_with_hooks(batch, fwd_hooks=[("blocks.1.attn.hook_z", zero)])
    with model.hooks(fwd_hooks=[("blocks.1.attn.hook_z", zero)]):
        in_context = model(batch)
    model.add_hook(lambda n: n == "blocks.1.attn.hook_z", zero)
    try:
        added = model(batch)
    finally:
        model.reset_hooks()
    torch.testing.assert_close(in_context, expected, atol=0, rtol=0)
    torch.testing.assert_close(added, expected, atol=0, rtol=0)
    assert not torch.allclose(model(batch), expected)
    loss = model.run_with_hooks(batch, [("blocks.1.attn.hook_z", zero)], return_type="loss")
    torch.testing.assert_close(loss, hand_loss(model, batch, expected).mean())


# ------------------------------------------------------------ run_with_cache
def test_remove_batch_dim_equals_the_first_row(model, batch):
    one = batch[:1]
    _, cache = model.run_with_cache(one)
    _, squeezed = model.run_with_cache(one, remove_batch_dim=True)
    assert not squeezed.has_batch_dim
    for name in ("blocks.0.hook_resid_pre", "blocks.1.attn.hook_pattern", "hook_rtg_embed"):
        assert torch.equal(squeezed[name], cache[name][0])
    assert squeezed.accumulated_resid().shape == (model.cfg.n_layers + 1, 11, model.cfg.d_model)
    with pytest.raises(BatchError, match=r"batch\[i:i \+ 1\]"):
        model.run_with_cache(batch, remove_batch_dim=True)


def test_return_cache_object_false_gives_the_dict(model, batch):
    logits, cache = model.run_with_cache(batch)
    out, store = model.run_with_cache(batch, return_cache_object=False)
    assert isinstance(store, dict) and not isinstance(store, ActivationCache)
    assert torch.equal(out, logits) and set(store) == set(cache.keys())
    assert torch.equal(store["blocks.1.hook_mlp_out"], cache["blocks.1.hook_mlp_out"])


def test_device_stores_the_cache_there(model, batch):
    _, cache = model.run_with_cache(batch, device="meta", names_filter="blocks.0.hook_resid_pre")
    assert cache["blocks.0.hook_resid_pre"].device.type == "meta"


def test_pos_slice_keeps_the_positions(model, batch):
    names = ["blocks.0.hook_resid_pre", "blocks.0.attn.hook_pattern"]
    _, full = model.run_with_cache(batch, names_filter=names)
    _, last = model.run_with_cache(batch, names_filter=names, pos_slice=-1)
    assert torch.equal(last[names[0]], full[names[0]][:, -1:])
    assert torch.equal(last[names[1]], full[names[1]][:, :, -1:])


def test_incl_bwd_caches_the_gradients_of_the_loss(model, batch):
    name = "blocks.1.hook_resid_pre"
    loss, cache = model.run_with_cache(batch, incl_bwd=True, return_type="loss")
    model.zero_grad(set_to_none=True)
    delta = torch.zeros(2, 11, model.cfg.d_model, requires_grad=True)
    hooked = model.run_with_hooks(
        batch, [(name, lambda act, hook: act + delta)], return_type="loss"
    )
    (expected,) = torch.autograd.grad(hooked, delta)
    torch.testing.assert_close(cache[name + "_grad"], expected)
    assert torch.equal(cache["blocks.1.hook_in_grad"], cache[name + "_grad"])
    torch.testing.assert_close(loss.detach(), hooked.detach())
    with pytest.raises(DTLensError, match='return_type="loss"'):
        model.run_with_cache(batch, incl_bwd=True)


def test_reset_hooks_end_false_keeps_the_caching_hooks(model, batch):
    name = "blocks.0.hook_resid_pre"
    try:
        model.run_with_cache(batch, names_filter=name, reset_hooks_end=False)
        assert model.hook_dict[name].has_hooks()
    finally:
        model.reset_hooks()
    assert not model.hook_dict[name].has_hooks()


def test_hook_removal_keeps_transformer_lens_semantics(model, batch):
    """dtlens visits only hook points holding hooks when it removes them; what stays is
    what TransformerLens' own traversal of every name in ``hook_dict`` keeps."""

    def count(act, hook):
        return act

    names = ["blocks.0.hook_resid_pre", "blocks.0.hook_in", "blocks.1.attn.hook_pattern"]
    by_name = model.hook_dict
    assert by_name["blocks.0.hook_in"] is by_name["blocks.0.hook_resid_pre"]  # an alias
    by_name.clear()  # a copy: editing it changes nothing
    points = model.hook_points()
    assert len(set(map(id, points))) == len(points)  # each once
    assert {id(point) for point in model.hook_dict.values()} == set(map(id, points))
    try:
        model.add_hook(names[2], count, is_permanent=True)
        with model.hooks(fwd_hooks=[(names[0], count)]):
            with model.hooks(fwd_hooks=[(names[1], count)]):  # level 2, on the same point
                assert len(model.hook_dict[names[0]].fwd_hooks) == 2
            assert len(model.hook_dict[names[0]].fwd_hooks) == 1  # level 2's hook only
        assert not model.hook_dict[names[0]].has_hooks()
        assert model.hook_dict[names[2]].has_hooks()  # permanent hooks survive
        model.run_with_cache(batch, names_filter=names[2])
        assert len(model.hook_dict[names[2]].fwd_hooks) == 1
    finally:
        model.reset_hooks(including_permanent=True)
    assert not any(point.has_hooks(including_permanent=True) for point in model.hook_points())


# ------------------------------------------------------------------ forward
def hand_loss(model, batch, logits):
    """Cross-entropy of batch.actions[:, t] against the logits at S_t, per step."""
    n_act = batch.actions.shape[1]
    at_states = logits[:, [3 * t + 1 for t in range(n_act)]]
    return F.cross_entropy(at_states.transpose(1, 2), batch.actions, reduction="none")


def test_return_types(model, batch):
    logits = model(batch)
    assert torch.equal(model(batch, return_type="logits"), logits)
    assert model(batch, return_type=None) is None
    expected = hand_loss(model, batch, logits)
    torch.testing.assert_close(model(batch, return_type="loss"), expected.mean())
    both = model(batch, return_type="both")
    assert torch.equal(both[0], logits)
    torch.testing.assert_close(both[1], expected.mean())
    per_step = model(batch, return_type="loss", loss_per_token=True)
    torch.testing.assert_close(per_step, expected)
    with pytest.raises(DTLensError, match="'logits', 'loss', 'both', None"):
        model(batch, return_type="probs")


def test_loss_skips_padding_and_the_padding_action(model):
    short = build_batch(batch_size=2, n_steps=3, seed=3)
    padded = model.pad_context(short)  # 4 steps, the first one padding
    assert padded.n_steps == 4 and padded.padding_mask is not None
    torch.testing.assert_close(
        model(padded, return_type="loss"), model(short, return_type="loss"), atol=ATOL, rtol=0
    )
    per_step = model(padded, return_type="loss", loss_per_token=True)
    assert bool((per_step[:, 0] == 0).all())
    # padding as tokens (no mask): steps whose action is the padding action score 0, the
    # others are the plain cross-entropy of their action (computed here by hand)
    tokens = padded.replace(padding_mask=None)
    pad_action = model.cfg.n_actions
    assert bool((tokens.actions[:, 0] == pad_action).all())
    per_step = model(tokens, return_type="loss", loss_per_token=True)
    logits = model(tokens)
    real = hand_loss(
        model, tokens.replace(actions=tokens.actions.clamp(max=pad_action - 1)), logits
    )
    expected = torch.where(tokens.actions == pad_action, torch.zeros_like(real), real)
    torch.testing.assert_close(per_step, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(
        model(tokens, return_type="loss"), expected[:, 1:].mean(), atol=ATOL, rtol=0
    )
    one_step = build_batch(batch_size=1, n_steps=1)
    with pytest.raises(BatchError, match="no step"):
        model(one_step, return_type="loss")


def test_stop_at_layer_returns_the_residual_stream(model, batch):
    _, cache = model.run_with_cache(batch)
    torch.testing.assert_close(model(batch, stop_at_layer=0), cache["blocks.0.hook_resid_pre"])
    torch.testing.assert_close(model(batch, stop_at_layer=-1), cache["blocks.1.hook_resid_pre"])
    torch.testing.assert_close(model(batch, stop_at_layer=2), cache["blocks.1.hook_resid_post"])
    with pytest.raises(BatchError, match="stop_at_layer=3"):
        model(batch, stop_at_layer=3)


@pytest.mark.parametrize(
    ("kwarg", "fix"),
    [
        ("start_at_layer", "forward_from_layer"),
        ("attention_mask", "padding_mask"),
        ("tokens", "TrajectoryBatch"),
        ("past_kv_cache", "suffix"),
        ("colour", "return_type="),
    ],
)
def test_forward_keywords_of_text_models_raise_naming_the_fix(model, batch, kwarg, fix):
    with pytest.raises(DTLensError, match=fix):
        model(batch, **{kwarg: 1})


def test_a_token_tensor_raises_naming_the_batch(model):
    with pytest.raises(BatchError, match="TrajectoryBatch"):
        model(torch.zeros(1, 11, dtype=torch.long))


# ------------------------------------------------------------ text-model calls
def test_to_str_tokens_are_the_token_labels(model, batch):
    assert model.to_str_tokens(batch) == model.token_labels(batch)
    assert model.to_str_tokens(batch)[:4] == ["R1", "S1", "A1", "R2"]


@pytest.mark.parametrize(
    ("call", "fix"),
    [
        (lambda m: m.to_tokens("hello"), "TrajectoryBatch"),
        (lambda m: m.to_string(torch.zeros(3)), "token_labels"),
        (lambda m: m.to_single_token("left"), "n_actions"),
        (lambda m: m.generate("hello"), "rollout"),
        (lambda m: m.set_use_attn_result(True), "stack_head_results"),
        (lambda m: m.set_use_split_qkv_input(True), "path_patching"),
        (lambda m: m.set_use_attn_in(True), "path_patching"),
    ],
)
def test_text_model_calls_raise_naming_the_fix(model, call, fix):
    with pytest.raises(DTLensError, match=fix):
        call(model)
