"""Direct logit attribution, logit lens and residual decomposition on tiny models.

Expectations come from the model's own forward pass (its logits, its cached
residual stream, its own ``ln_final`` and ``unembed`` modules) or from hand
computations from ``hook_z`` and ``W_O`` written here.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from dtlens.analysis.decomposition import (
    direct_logit_attribution,
    logit_lens,
    residual_decomposition,
)
from dtlens.errors import BatchError, ConfigError, HookNameError
from tests.conftest import build_batch, build_model

TOL = 1e-4
VARIANTS = list(itertools.product(["LN", "LNPre", None], [True, False]))


def with_random_norm_weights(model):
    """LayerNorm weights start at 1: make them random so that ignoring them is caught."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, param in model.core.named_parameters():
            if ".ln" in f".{name}" and name.endswith("weight"):
                param.copy_(1 + 0.5 * torch.randn(param.shape, generator=g))
    return model


@pytest.fixture(
    scope="module", params=VARIANTS, ids=lambda v: f"{v[0]}-{'gated' if v[1] else 'mlp'}"
)
def run(request):
    """(model, batch, logits, cache) for one normalisation x MLP variant."""
    norm, gated = request.param
    model = build_model(normalization=norm, gated_mlp=gated, act_fn="relu" if gated else "gelu")
    model = with_random_norm_weights(model)
    batch = build_batch(batch_size=3, n_steps=4, seed=1)
    with torch.no_grad():
        logits, cache = model.run_with_cache(batch)
    return model, batch, logits, cache


@pytest.fixture(scope="module")
def ln_run():
    model = with_random_norm_weights(build_model())
    batch = build_batch(batch_size=2, n_steps=4, seed=2)
    with torch.no_grad():
        logits, cache = model.run_with_cache(batch)
    return model, batch, logits, cache


# ------------------------------------------------------------------ DLA sums
@pytest.mark.parametrize("by", ["component", "head"])
@pytest.mark.parametrize("split_embed", [False, True])
def test_dla_sums_to_logits_at_last_state(run, by, split_embed):
    model, _, logits, cache = run
    dla = direct_logit_attribution(cache, model, by=by, split_embed=split_embed)
    assert dla.position == logits.shape[1] - 1
    assert dla.labels[-1] == "bias"
    torch.testing.assert_close(dla.total(), logits[:, -1], atol=TOL, rtol=0)


@pytest.mark.parametrize("timestep", [0, 2, -2])
def test_dla_sums_to_logits_at_earlier_state_tokens(run, timestep):
    model, batch, logits, cache = run
    dla = direct_logit_attribution(cache, model, timestep=timestep)
    position = 3 * (timestep % batch.n_steps) + 1  # S_t of R,S,A tokens
    assert dla.position == position
    torch.testing.assert_close(dla.total(), logits[:, position], atol=TOL, rtol=0)


def test_dla_logit_difference_and_single_action(run):
    model, _, logits, cache = run
    diff = direct_logit_attribution(cache, model, actions=("left", "forward"))
    assert diff.actions == "left - forward" and diff.values.ndim == 2
    torch.testing.assert_close(diff.total(), logits[:, -1, 0] - logits[:, -1, 2], atol=TOL, rtol=0)
    single = direct_logit_attribution(cache, model, actions=4, by="head")
    assert single.actions == "drop"
    torch.testing.assert_close(single.total(), logits[:, -1, 4], atol=TOL, rtol=0)


def test_dla_with_left_padding_sums_to_logits():
    model = with_random_norm_weights(build_model())
    batch = build_batch(batch_size=2, n_steps=2, seed=5).left_pad(4, pad_action=7)
    with torch.no_grad():
        logits, cache = model.run_with_cache(batch)
    dla = direct_logit_attribution(cache, model, by="head")
    torch.testing.assert_close(dla.total(), logits[:, -1], atol=TOL, rtol=0)


def test_dla_on_clone_with_final_action():
    model = build_model(model_type="clone", n_ctx=8)
    batch = build_batch(n_steps=4, final_action=True, seed=3).replace(rtg=None)
    with torch.no_grad():
        logits, cache = model.run_with_cache(batch)
    dla = direct_logit_attribution(cache, model, split_embed=True)
    assert dla.labels[:3] == ("state_embed", "action_embed", "time_embed")
    assert dla.position == 6  # S4 of S,A tokens, before the final A4
    torch.testing.assert_close(dla.total(), logits[:, 6], atol=TOL, rtol=0)


# --------------------------------------------------------- hand computations
def test_single_head_dla_equals_hand_computation(ln_run):
    model, _, _, cache = ln_run
    layer, head, pos = 1, 2, -1
    z = cache[f"blocks.{layer}.attn.hook_z"][:, pos, head]  # [batch, d_head]
    out = z @ model.core.W_O[layer, head]  # [batch, d_model]
    centred = out - out.mean(-1, keepdim=True)
    scale = cache["ln_final.hook_scale"][:, pos]
    expected = (centred / scale * model.core.ln_final.w) @ model.W_U
    dla = direct_logit_attribution(cache, model, by="head")
    torch.testing.assert_close(dla.row(f"L{layer}H{head}"), expected, atol=1e-5, rtol=0)


def test_bias_row_is_ln_bias_and_head_bias(ln_run):
    model, _, _, cache = ln_run
    dla = direct_logit_attribution(cache, model)
    expected = model.core.ln_final.b @ model.W_U + model.b_U
    torch.testing.assert_close(dla.row("bias"), expected.expand(2, -1), atol=1e-6, rtol=0)


def test_heads_plus_attn_bias_equal_attn_out(ln_run):
    _, _, _, cache = ln_run
    heads = residual_decomposition(cache, by="head")
    for layer in range(2):
        idx = [i for i, lab in enumerate(heads.labels) if lab.startswith(f"L{layer}H")]
        idx.append(heads.labels.index(f"{layer}_attn_bias"))
        torch.testing.assert_close(
            heads.components[idx].sum(0), cache[f"blocks.{layer}.hook_attn_out"], atol=1e-5, rtol=0
        )


def test_residual_decomposition_sums_to_final_resid(run):
    model, _, _, cache = run
    final = cache[f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"]
    for by in ("component", "head"):
        dec = residual_decomposition(cache, by=by)
        assert len(dec.labels) == dec.components.shape[0]
        torch.testing.assert_close(dec.components.sum(0), final, atol=1e-5, rtol=0)


def test_split_embed_places_each_embedding_at_its_tokens(ln_run):
    cache = ln_run[3]
    dec = residual_decomposition(cache, split_embed=True)
    parts = dict(zip(dec.labels, dec.components, strict=True))
    torch.testing.assert_close(
        sum(parts[k] for k in ("rtg_embed", "state_embed", "action_embed", "time_embed")),
        cache["hook_embed"],
        atol=1e-6,
        rtol=0,
    )
    state = parts["state_embed"]
    torch.testing.assert_close(state[:, 1::3], cache["hook_state_embed"])  # S tokens
    assert torch.count_nonzero(state[:, 0::3]) == 0 and torch.count_nonzero(state[:, 2::3]) == 0
    time = parts["time_embed"]
    for kind in range(3):  # every token of step t carries time t
        torch.testing.assert_close(
            time[:, kind::3], cache["hook_time_embed"][:, : time[:, kind::3].shape[1]]
        )


# ---------------------------------------------------------------- logit lens
@pytest.mark.parametrize("scale", ["own", "final"])
def test_logit_lens_last_stage_is_the_model_output(run, scale):
    model, _, logits, cache = run
    lens = logit_lens(cache, model, scale=scale, incl_mid=True)
    assert lens.labels[-1] == "final_post" and len(lens.labels) == 2 * model.cfg.n_layers + 1
    torch.testing.assert_close(lens.values[-1], logits[:, -1], atol=1e-5, rtol=0)


def test_logit_lens_own_scale_matches_the_real_final_norm(run):
    model, _, _, cache = run
    lens = logit_lens(cache, model, scale="own")
    resid = cache["blocks.1.hook_resid_pre"][:, -1:]
    with torch.no_grad():
        expected = model.core.unembed(model.core.ln_final(resid))[:, 0]
    torch.testing.assert_close(lens.row("1_pre"), expected, atol=1e-5, rtol=0)


def test_logit_lens_final_scale_steps_equal_layer_dla(run):
    model, _, _, cache = run
    lens = logit_lens(cache, model, scale="final")
    dla = direct_logit_attribution(cache, model)
    step = lens.row("1_pre") - lens.row("0_pre")
    torch.testing.assert_close(
        step, dla.row("0_attn_out") + dla.row("0_mlp_out"), atol=1e-5, rtol=0
    )


def test_logit_lens_probabilities(ln_run):
    model, _, logits, cache = ln_run
    lens = logit_lens(cache, model, probs=True)
    torch.testing.assert_close(lens.values.sum(-1), torch.ones(3, 2))
    torch.testing.assert_close(lens.values[-1], logits[:, -1].softmax(-1), atol=1e-6, rtol=0)


def test_long_records_follow_values(ln_run):
    model, _, _, cache = ln_run
    dla = direct_logit_attribution(cache, model)
    records = dla.to_long_records()
    assert len(records) == dla.values.numel()
    rec = records[1 * 2 * 7 + 1 * 7 + 3]  # row 1, batch 1, action 3
    assert (rec["row"], rec["batch"], rec["action"]) == ("pos_embed", 1, "pickup")
    assert rec["value"] == pytest.approx(float(dla.values[1, 1, 3]))


# -------------------------------------------------------------------- errors
def test_errors_name_the_problem(ln_run):
    model, batch, _, cache = ln_run
    with pytest.raises(ConfigError, match="'jump'"):
        direct_logit_attribution(cache, model, actions=("left", "jump"))
    with pytest.raises(ConfigError, match="pair"):
        direct_logit_attribution(cache, model, actions=(0, 1, 2))
    with pytest.raises(ConfigError, match="by='neuron'"):
        direct_logit_attribution(cache, model, by="neuron")
    with pytest.raises(BatchError, match="timestep 4"):
        direct_logit_attribution(cache, model, timestep=4)
    with pytest.raises(ConfigError, match="scale='mid'"):
        logit_lens(cache, model, scale="mid")
    _, small = model.run_with_cache(batch, names_filter=["hook_embed", "hook_pos_embed"])
    with pytest.raises(HookNameError, match=r"blocks\.0\.hook_attn_out"):
        direct_logit_attribution(small, model)
