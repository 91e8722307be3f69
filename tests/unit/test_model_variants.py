"""Every supported variant: converter + model match the reference; save/load is exact."""

from __future__ import annotations

import pytest
import torch

import dtlens
from dtlens.model.checkpoint import _build
from tests.reference import random_original_checkpoint, reference_forward

VARIANTS = {
    "LN-plain-relu": dict(layer_norm="LN"),
    "LNPre-plain-gelu": dict(layer_norm="LNPre", activation_fn="gelu"),
    "none-plain-relu": dict(layer_norm=None),
    "LN-gated-relu": dict(layer_norm="LN", gated_mlp=True),
    "LNPre-gated-gelu_new": dict(layer_norm="LNPre", gated_mlp=True, activation_fn="gelu_new"),
    "none-gated-silu": dict(layer_norm=None, gated_mlp=True, activation_fn="silu"),
    "linear-time": dict(time_embedding_type="linear"),
    "linear-time-bias": dict(time_embedding_type="linear", time_bias=True),
    "raw-147-state": dict(channels=3),
}


def variant_batch(channels: int, n_steps: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    high = 2 if channels == 20 else 10  # raw index images hold small ints
    return dtlens.TrajectoryBatch(
        obs=torch.randint(0, high, (2, n_steps, 7, 7, channels), generator=g).float(),
        actions=torch.randint(0, 8, (2, n_steps - 1), generator=g),
        rtg=torch.rand(2, n_steps, generator=g),
        timesteps=torch.randint(0, 45, (2, 1), generator=g) + torch.arange(n_steps),
    )


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_matches_reference_and_round_trips(name, tmp_path):
    options = VARIANTS[name]
    raw = random_original_checkpoint(seed=len(name), **options)
    state_dict, cfg, _ = dtlens.convert_original(raw)
    model = _build(cfg, state_dict, name).eval()
    batch = variant_batch(options.get("channels", 20), seed=len(name))

    ref = reference_forward(raw, batch.obs, batch.actions, batch.rtg, batch.timesteps)
    logits, cache = model.run_with_cache(batch)
    torch.testing.assert_close(logits, ref["logits"], atol=1e-5, rtol=0)
    torch.testing.assert_close(
        cache["blocks.1.attn.hook_pattern"], ref["pattern.1"], atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        cache["blocks.1.hook_resid_pre"], ref["resid_pre.1"], atol=1e-5, rtol=0
    )

    reloaded = dtlens.load(dtlens.save(model, tmp_path / "ckpt"))
    assert reloaded.cfg == model.cfg
    for key, value in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[key], value), key
    assert torch.equal(reloaded(batch), logits)


def test_converter_is_pure():
    raw = random_original_checkpoint(gated_mlp=True)
    before = {k: v.clone() for k, v in raw["model_state_dict"].items()}
    dtlens.convert_original(raw)
    assert raw["model_state_dict"].keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(raw["model_state_dict"][key], value), key


def test_gated_b_in_is_folded_into_b_out():
    """hook_post of a gated model is HookedTransformer's hook_post minus b_in (documented)."""
    raw = random_original_checkpoint(gated_mlp=True, layer_norm="LN")
    state_dict, cfg, _ = dtlens.convert_original(raw)
    model = _build(cfg, state_dict, "gated")
    sd = raw["model_state_dict"]
    expected = (
        sd["transformer.blocks.0.mlp.b_out"]
        + sd["transformer.blocks.0.mlp.b_in"] @ sd["transformer.blocks.0.mlp.W_out"]
    )
    torch.testing.assert_close(model.core.b_out[0], expected)
