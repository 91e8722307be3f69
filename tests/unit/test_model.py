"""HookedDecisionTransformer: caching, hooks, token layout, padding, errors."""

from __future__ import annotations

import pytest
import torch

from dtlens import BatchError, HookNameError
from dtlens.model import EMBEDDING_HOOKS, HookedDecisionTransformer
from tests.conftest import build_batch, build_config, build_model

LEGACY_NAMES = [
    "hook_embed",
    "hook_pos_embed",
    "blocks.0.hook_resid_pre",
    "blocks.0.hook_resid_mid",
    "blocks.1.hook_resid_post",
    "blocks.0.hook_attn_out",
    "blocks.0.hook_mlp_out",
    "blocks.0.attn.hook_pattern",
    "blocks.0.attn.hook_z",
    "blocks.0.attn.hook_q",
    "blocks.0.mlp.hook_post",
    "ln_final.hook_scale",
]


def test_one_cache_holds_embedding_and_core_hooks(tiny_model, tiny_batch):
    logits, cache = tiny_model.run_with_cache(tiny_batch)
    for name in [*EMBEDDING_HOOKS, *LEGACY_NAMES]:
        assert name in cache, name
    assert logits.shape == (2, 11, 7)
    assert cache["hook_rtg_embed"].shape == (2, 4, 32)
    assert cache["hook_action_embed"].shape == (2, 3, 32)
    assert cache["blocks.0.attn.hook_pattern"].shape == (2, 4, 11, 11)
    torch.testing.assert_close(cache["blocks.1.hook_resid_post"], cache["blocks.1.hook_out"])


def test_cache_matches_hand_built_tokens(tiny_model, tiny_batch):
    """hook_embed = interleaved (R|S|A embedding + time embedding); pos embed added after."""
    _, cache = tiny_model.run_with_cache(tiny_batch)
    m, b = tiny_model, tiny_batch
    time = m.time_embed.weight[b.timesteps]
    rtg = b.rtg[..., None] * m.rtg_embed.weight[:, 0]
    state = b.obs.permute(0, 1, 4, 2, 3).flatten(2) @ m.state_embed.weight.T
    action = m.action_embed.weight[b.actions]
    expected = []
    for t in range(4):
        expected += [rtg[:, t] + time[:, t], state[:, t] + time[:, t]]
        if t < 3:
            expected.append(action[:, t] + time[:, t])
    expected = torch.stack(expected, dim=1)
    torch.testing.assert_close(cache["hook_embed"], expected)
    torch.testing.assert_close(
        cache["blocks.0.hook_resid_pre"], expected + m.core.W_pos[:11], atol=1e-6, rtol=0
    )


def test_decompose_resid_sums_to_final_residual(tiny_model, tiny_batch):
    _, cache = tiny_model.run_with_cache(tiny_batch)
    parts = cache.decompose_resid()
    torch.testing.assert_close(parts.sum(0), cache["blocks.1.hook_resid_post"], atol=1e-5, rtol=0)


def test_run_with_hooks_ablating_rtg_equals_zero_rtg_weights(tiny_model, tiny_batch):
    ablated = tiny_model.run_with_hooks(
        tiny_batch, fwd_hooks=[("hook_rtg_embed", lambda act, hook: torch.zeros_like(act))]
    )
    with torch.no_grad():
        tiny_model.rtg_embed.weight.zero_()
    torch.testing.assert_close(ablated, tiny_model(tiny_batch))


def test_hooks_are_removed_after_run(tiny_model, tiny_batch):
    clean = tiny_model(tiny_batch)
    tiny_model.run_with_hooks(
        tiny_batch, fwd_hooks=[("blocks.0.hook_resid_pre", lambda act, hook: act * 0)]
    )
    torch.testing.assert_close(tiny_model(tiny_batch), clean)


def test_mod_dict_is_built_once_and_names_what_the_bridge_names(tiny_model):
    """hooks() reads mod_dict once per hook name; it is cached but still the bridge's map."""
    first = tiny_model.mod_dict
    assert tiny_model.mod_dict is first
    fresh = tiny_model.core.mod_dict  # rebuilt by the bridge on every access
    assert fresh.keys() == first.keys()
    assert all(first[name] is module for name, module in fresh.items())


def test_forward_from_layer_reuses_cached_prefix(tiny_model, tiny_batch):
    logits, cache = tiny_model.run_with_cache(tiny_batch)
    for layer in range(2):
        resid = cache[f"blocks.{layer}.hook_resid_pre"]
        out = tiny_model.forward_from_layer(resid, layer, tiny_batch)
        torch.testing.assert_close(out, logits, atol=1e-5, rtol=0)
    final = tiny_model.forward_from_layer(cache["blocks.1.hook_resid_post"], 2, tiny_batch)
    torch.testing.assert_close(final, logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("model_type", ["decision_transformer", "clone"])
def test_masked_left_padding_equals_unpadded(model_type):
    model = build_model(model_type=model_type, n_ctx=11 if model_type != "clone" else 7)
    batch = build_batch(n_steps=2, batch_size=3)
    if model_type == "clone":
        batch = batch.replace(rtg=None)
    unpadded = model(batch)
    padded = model(batch.left_pad(4, pad_action=7))
    torch.testing.assert_close(padded[:, -unpadded.shape[1] :], unpadded, atol=1e-5, rtol=0)


def test_masked_padding_gives_finite_gradients():
    model = build_model().train()
    batch = build_batch(n_steps=1).left_pad(4, pad_action=7)
    model(batch).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is None or torch.isfinite(param.grad).all(), name


def test_token_labels_and_state_positions():
    dt = build_model()
    assert dt.token_labels(3) == ["R1", "S1", "A1", "R2", "S2", "A2", "R3", "S3"]
    assert dt.state_positions(3) == [1, 4, 7]
    assert dt.token_labels(build_batch(n_steps=2, final_action=True)) == [
        "R1",
        "S1",
        "A1",
        "R2",
        "S2",
        "A2",
    ]
    clone = build_model(model_type="clone", n_ctx=7)
    assert clone.token_labels(2) == ["S1", "A1", "S2"]
    assert clone.state_positions(2) == [0, 2]


def test_action_logits_read_at_state_tokens(tiny_model, tiny_batch):
    logits = tiny_model(tiny_batch)
    torch.testing.assert_close(tiny_model.action_logits(tiny_batch), logits[:, [1, 4, 7, 10]])


def test_clone_has_no_rtg_hook():
    clone = build_model(model_type="clone", n_ctx=7)
    _, cache = clone.run_with_cache(build_batch(n_steps=3).replace(rtg=None))
    assert "hook_rtg_embed" not in cache and "hook_state_embed" in cache


def test_seed_makes_models_reproducible():
    batch = build_batch()
    a = HookedDecisionTransformer(build_config(seed=3))
    b = HookedDecisionTransformer(build_config(seed=3))
    c = HookedDecisionTransformer(build_config(seed=4))
    assert torch.equal(a(batch), b(batch))
    assert not torch.equal(a(batch), c(batch))


# ---------------------------------------------------------------------- errors
def test_unknown_hook_name_suggests_close_names(tiny_model, tiny_batch):
    with pytest.raises(HookNameError, match=r"blocks\.0\.hook_resid_pre"):
        tiny_model.run_with_hooks(tiny_batch, fwd_hooks=[("blocks.0.hook_resid_pr", print)])
    with pytest.raises(HookNameError, match="unknown hook name 'nonsense'"):
        tiny_model.run_with_cache(tiny_batch, names_filter=["nonsense"])


def test_wrong_observation_shape_is_named(tiny_model):
    batch = build_batch(obs_shape=(7, 7, 3))
    with pytest.raises(BatchError, match=r"per-step shape \[7, 7, 3\].*\[7, 7, 20\]"):
        tiny_model(batch)


def test_timestep_beyond_time_embedding(tiny_model):
    with pytest.raises(BatchError, match=r"\[48, 51\].*\[0, 50\]"):
        tiny_model(build_batch(start_timestep=48))


def test_context_longer_than_n_ctx(tiny_model):
    with pytest.raises(BatchError, match="14 tokens, more than the model's n_ctx=11"):
        tiny_model(build_batch(n_steps=5))


def test_action_out_of_range(tiny_model, tiny_batch):
    bad = tiny_batch.replace(actions=torch.full_like(tiny_batch.actions, 9))
    with pytest.raises(BatchError, match=r"\[9, 9\].*padding action 7"):
        tiny_model(bad)


def test_decision_transformer_needs_rtg(tiny_model, tiny_batch):
    with pytest.raises(BatchError, match="needs rtg"):
        tiny_model(tiny_batch.replace(rtg=None))


def test_forward_from_layer_rejects_bad_layer(tiny_model, tiny_batch):
    with pytest.raises(BatchError, match=r"start_layer=3 is outside 0\.\.2"):
        tiny_model.forward_from_layer(torch.zeros(2, 11, 32), 3)


def test_pad_context_follows_the_models_recipe():
    model = build_model()
    short = build_batch(n_steps=2)
    padded = model.pad_context(short)
    assert padded.n_steps == 4 and padded.padding_mask[:, :2].sum() == 0
    model.metadata["context_padding"] = "tokens"
    as_tokens = model.pad_context(short)
    assert as_tokens.padding_mask is None and as_tokens.actions[0, :2].tolist() == [7, 7]
    full = build_batch(n_steps=4)
    assert model.pad_context(full) is full
