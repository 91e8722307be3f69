"""TransformerLens' own patching sweeps (``transformer_lens.patching``) on a decision
transformer, through :mod:`dtlens.compat` (the ``transformer_lens.patching`` rows of
docs/tl_compat.md; the other calls are in tests/unit/test_tl_compat.py).

Every ``get_act_patch_*`` and helper runs on :func:`dtlens.compat.tl_patching_inputs` and
is checked against dtlens' own activation patching on the same pairs.
"""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
from transformer_lens import patching

import dtlens
from dtlens.analysis.patching.engine import patched_metrics
from dtlens.compat import TLPatchingModel, tl_patching_inputs
from dtlens.errors import BatchError, DTLensError
from tests.conftest import build_batch, build_model

ATOL = 1e-5


@pytest.fixture(scope="module")
def sweep_setup():
    """A 2-head model, 3-step windows (8 tokens), two pairs, the clean cache."""
    model = build_model(n_heads=2)
    clean, corrupt = build_batch(n_steps=3, seed=0), build_batch(n_steps=3, seed=1)
    tl_model, tokens = tl_patching_inputs(model, corrupt)
    _, clean_cache = model.run_with_cache(clean)
    return model, clean, corrupt, tl_model, tokens, clean_cache


def scalar_metric(logits):
    return (logits[:, -1, 0] - logits[:, -1, 1]).mean()


def pair_metric(logits):
    return logits[:, -1, 0] - logits[:, -1, 1]


def run_tl(fn, *args, **kwargs):
    with contextlib.redirect_stderr(io.StringIO()):  # TransformerLens' tqdm bars
        return fn(*args, **kwargs)


def ours(sweep_setup, hook, by, metric=scalar_metric):
    model, clean, corrupt, *_ = sweep_setup
    return dtlens.activation_patching(
        model, clean, corrupt, metric, hook, by, normalize=False, show_progress=False
    )


SWEEP_PAIRS = [
    ("get_act_patch_resid_pre", "resid_pre", ("layer", "pos")),
    ("get_act_patch_resid_mid", "resid_mid", ("layer", "pos")),
    ("get_act_patch_attn_out", "attn_out", ("layer", "pos")),
    ("get_act_patch_mlp_out", "mlp_out", ("layer", "pos")),
    ("get_act_patch_attn_head_out_by_pos", "z", ("layer", "pos", "head")),
    ("get_act_patch_attn_head_q_by_pos", "q", ("layer", "pos", "head")),
    ("get_act_patch_attn_head_k_by_pos", "k", ("layer", "pos", "head")),
    ("get_act_patch_attn_head_v_by_pos", "v", ("layer", "pos", "head")),
    ("get_act_patch_attn_head_pattern_by_pos", "pattern", ("layer", "head", "pos")),
    ("get_act_patch_attn_head_out_all_pos", "z", ("layer", "head")),
    ("get_act_patch_attn_head_q_all_pos", "q", ("layer", "head")),
    ("get_act_patch_attn_head_k_all_pos", "k", ("layer", "head")),
    ("get_act_patch_attn_head_v_all_pos", "v", ("layer", "head")),
    ("get_act_patch_attn_head_pattern_all_pos", "pattern", ("layer", "head")),
]


@pytest.mark.parametrize(("tl_name", "hook", "by"), SWEEP_PAIRS, ids=[p[0] for p in SWEEP_PAIRS])
def test_transformer_lens_sweeps_equal_dtlens_sweeps(sweep_setup, tl_name, hook, by):
    *_, tl_model, tokens, clean_cache = sweep_setup
    theirs = run_tl(getattr(patching, tl_name), tl_model, tokens, clean_cache, scalar_metric)
    expected = ours(sweep_setup, hook, by).values
    assert theirs.shape == expected.shape
    torch.testing.assert_close(theirs, expected, atol=ATOL, rtol=1e-5)


def test_the_every_helpers_equal_dtlens_sweeps(sweep_setup):
    *_, tl_model, tokens, clean_cache = sweep_setup
    blocks = run_tl(
        patching.get_act_patch_block_every, tl_model, tokens, clean_cache, scalar_metric
    )
    expected = torch.stack(
        [
            ours(sweep_setup, h, ("layer", "pos")).values
            for h in ("resid_pre", "attn_out", "mlp_out")
        ]
    )
    torch.testing.assert_close(blocks, expected, atol=ATOL, rtol=1e-5)
    kinds = ("z", "q", "k", "v", "pattern")
    all_pos = run_tl(
        patching.get_act_patch_attn_head_all_pos_every, tl_model, tokens, clean_cache, scalar_metric
    )
    expected = torch.stack([ours(sweep_setup, h, ("layer", "head")).values for h in kinds])
    torch.testing.assert_close(all_pos, expected, atol=ATOL, rtol=1e-5)
    by_pos = run_tl(
        patching.get_act_patch_attn_head_by_pos_every, tl_model, tokens, clean_cache, scalar_metric
    )
    expected = torch.stack([ours(sweep_setup, h, ("layer", "pos", "head")).values for h in kinds])
    torch.testing.assert_close(by_pos, expected, atol=ATOL, rtol=1e-5)


def test_dest_src_pattern_sweep_equals_dtlens_patched_metrics(sweep_setup):
    model = sweep_setup[0]
    clean, corrupt = build_batch(n_steps=2, seed=0), build_batch(n_steps=2, seed=1)  # 5 tokens
    tl_model, tokens = tl_patching_inputs(model, corrupt)
    _, clean_cache = model.run_with_cache(clean)
    theirs = run_tl(
        patching.get_act_patch_attn_head_pattern_dest_src_pos,
        tl_model,
        tokens,
        clean_cache,
        scalar_metric,
    )
    n_heads, n = model.cfg.n_heads, tokens.shape[1]
    assert theirs.shape == (2, n_heads, n, n)
    masks = torch.eye(n_heads * n * n, dtype=torch.bool).view(-1, n_heads, n, n)
    for layer in range(2):
        name = f"blocks.{layer}.attn.hook_pattern"
        values = patched_metrics(model, corrupt, clean, scalar_metric, name, masks)
        torch.testing.assert_close(theirs[layer], values.view(n_heads, n, n), atol=ATOL, rtol=1e-5)


def test_per_pair_reductions_and_baseline(sweep_setup):
    model, _, corrupt, tl_model, tokens, clean_cache = sweep_setup
    result = ours(sweep_setup, "resid_pre", ("layer", "pos"), pair_metric)
    mean = run_tl(
        patching.get_act_patch_resid_pre, tl_model, tokens, clean_cache, pair_metric, reduce="mean"
    )
    torch.testing.assert_close(mean, result.values, atol=ATOL, rtol=1e-5)
    per_pair = run_tl(
        patching.get_act_patch_resid_pre,
        tl_model,
        tokens,
        clean_cache,
        pair_metric,
        reduce="none",
        baseline=True,
    )
    torch.testing.assert_close(per_pair.values, result.info["per_pair"], atol=ATOL, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(per_pair.baseline, pair_metric(model(corrupt)))


def test_the_adapter_reads_rows_of_its_tokens_and_rejects_others(sweep_setup):
    model, _, corrupt, tl_model, tokens, _ = sweep_setup
    with torch.no_grad():
        torch.testing.assert_close(tl_model(tokens[1:]), model(corrupt[1:]))
        torch.testing.assert_close(tl_model.run_with_hooks(tokens), model(corrupt))
    with pytest.raises(BatchError, match="tl_patching_inputs"):
        tl_model.run_with_hooks(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(BatchError, match="tl_patching_inputs"):
        tl_model(corrupt.obs)
    with pytest.raises(DTLensError, match="HookedDecisionTransformer"):
        TLPatchingModel(model.core, corrupt)


def test_direct_path_patching_raises_naming_dtlens_path_patching(sweep_setup):
    model, _, corrupt, tl_model, tokens, clean_cache = sweep_setup
    _, corrupt_cache = model.run_with_cache(corrupt)
    with pytest.raises(DTLensError, match=r"dtlens\.path_patching"):
        run_tl(
            patching.get_act_patch_direct_path,
            tl_model,
            tokens,
            clean_cache,
            corrupt_cache,
            scalar_metric,
            src_layer=0,
            src_head=0,
        )


def test_transformer_lens_checks_the_model_is_in_eval_mode(sweep_setup):
    _, _, corrupt, _, _, clean_cache = sweep_setup
    training = build_model(n_heads=2).train()
    tl_model, tokens = tl_patching_inputs(training, corrupt)
    with pytest.raises(ValueError, match="eval"):
        run_tl(patching.get_act_patch_resid_pre, tl_model, tokens, clean_cache, scalar_metric)
