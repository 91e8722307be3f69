"""Metrics read the right token, compute the hand-checked value, and refuse bad input."""

from __future__ import annotations

import math

import pytest
import torch

from dtlens.analysis.metrics import (
    Metric,
    action_entropy,
    action_probability,
    logit_diff,
    make_action_entropy_metric,
    make_action_probability_metric,
    make_logit_diff_metric,
    patching_effect,
    restored_logit_diff,
    state_token_position,
)
from dtlens.errors import BatchError, ConfigError, DTLensError
from tests.conftest import build_batch, build_model


@pytest.fixture(scope="module")
def hand_logits() -> torch.Tensor:
    """2 rows, 3 steps, no final action (8 tokens R1 S1 A1 R2 S2 A2 R3 S3), 7 actions.

    Every entry is 100 except at the state tokens S1 (pos 1), S2 (pos 4), S3 (pos 7).
    """
    logits = torch.full((2, 8, 7), 100.0)
    logits[0, 1, :3] = torch.tensor([1.0, 2.0, 3.0])  # row 0, S1
    logits[0, 4, :3] = torch.tensor([5.0, -1.0, 0.0])  # row 0, S2
    logits[0, 7, :3] = torch.tensor([0.5, 2.5, -4.0])  # row 0, S3
    logits[1, 1, :3] = torch.tensor([0.0, 0.0, 0.0])
    logits[1, 4, :3] = torch.tensor([-3.0, 1.0, 2.0])
    logits[1, 7, :3] = torch.tensor([7.0, 1.0, 1.0])
    return logits


def test_logit_diff_hand_computed(hand_logits):
    assert logit_diff(hand_logits, 0, 1).tolist() == [0.5 - 2.5, 7.0 - 1.0]  # S3
    assert logit_diff(hand_logits, "left", "right", timestep=0).tolist() == [1.0 - 2.0, 0.0]
    assert logit_diff(hand_logits, 2, 0, timestep=1).tolist() == [0.0 - 5.0, 2.0 + 3.0]
    assert logit_diff(hand_logits, 2, 0, timestep=-2).tolist() == [-5.0, 5.0]
    assert logit_diff(hand_logits, 1, 0).shape == (2,)


def test_state_positions_for_each_token_layout():
    # DT: 3T - 1 or 3T tokens -> S_t at 3t + 1
    assert [state_token_position(8, t) for t in range(3)] == [1, 4, 7]
    assert state_token_position(9, -1) == 7  # with the final action token A3
    assert state_token_position(26, 0) == 1 and state_token_position(26, -1) == 25
    # clone: S, A per step -> S_t at 2t
    assert [state_token_position(5, t, tokens_per_step=2) for t in range(3)] == [0, 2, 4]
    assert state_token_position(6, -1, tokens_per_step=2) == 4
    # per-step logits
    assert state_token_position(4, -1, tokens_per_step=1) == 3


def test_metrics_use_the_models_state_positions():
    model = build_model()
    batch = build_batch(n_steps=4)
    logits = model(batch)
    per_step = model.action_logits(batch)  # independent: the model's own S_t slice
    for t in range(4):
        expected = per_step[:, t, 3] - per_step[:, t, 5]
        assert torch.allclose(logit_diff(logits, 3, 5, t, model=model), expected)
        assert torch.allclose(logit_diff(per_step, 3, 5, t, tokens_per_step=1), expected)
    clone = build_model(model_type="clone", n_ctx=7)
    clone_batch = build_batch(n_steps=4)
    clone_logits = clone(clone_batch)
    expected = clone.action_logits(clone_batch)[:, -1]
    got = action_probability(clone_logits, 2, model=clone)
    assert torch.allclose(got, expected.softmax(-1)[:, 2])


def test_logit_diff_without_head_bias_matches_a_model_with_zero_bias():
    model, unbiased = build_model(), build_model()
    with torch.no_grad():
        unbiased.b_U.zero_()
    batch = build_batch(n_steps=4)
    expected = logit_diff(unbiased(batch), 4, 1, model=unbiased)
    got = logit_diff(model(batch), 4, 1, model=model, exclude_bias=True)
    assert torch.allclose(got, expected, atol=1e-5)
    with_bias = logit_diff(model(batch), 4, 1, model=model)
    assert torch.allclose(with_bias - got, (model.b_U[4] - model.b_U[1]).detach().expand(2))


def test_probability_and_entropy_hand_computed():
    logits = torch.zeros(1, 2, 2)  # tokens_per_step 1: 2 steps, 2 actions
    logits[0, 1] = torch.tensor([0.0, math.log(3.0)])  # p = (0.25, 0.75)
    p = action_probability(logits, 1, tokens_per_step=1)
    assert p.item() == pytest.approx(0.75)
    h = action_entropy(logits, tokens_per_step=1)
    assert h.item() == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    assert action_entropy(logits, 0, tokens_per_step=1).item() == pytest.approx(math.log(2))
    peaked = torch.tensor([[[0.0, 0.0], [200.0, 0.0]]])
    assert action_entropy(peaked, tokens_per_step=1).item() == pytest.approx(0.0, abs=1e-6)


def test_restored_logit_diff_and_patching_effect():
    clean, corrupt = torch.tensor([2.0, -1.0]), torch.tensor([-2.0, 3.0])
    assert restored_logit_diff(corrupt, clean, corrupt).tolist() == [0.0, 0.0]
    assert restored_logit_diff(clean, clean, corrupt).tolist() == [1.0, 1.0]
    assert restored_logit_diff(torch.tensor([0.0, 1.0]), clean, corrupt).tolist() == [0.5, 0.5]
    # a sweep [layer, pos, batch] broadcasts against [batch]
    sweep = torch.stack([clean, corrupt]).expand(3, 2, 2)
    assert restored_logit_diff(sweep, clean, corrupt)[:, 0].eq(1).all()
    assert restored_logit_diff(sweep, clean, corrupt)[:, 1].eq(0).all()
    # noise: clean run patched; no effect (= clean) -> 0, fully corrupted -> 1
    assert patching_effect(clean, clean, corrupt, "noise").tolist() == [0.0, 0.0]
    assert patching_effect(corrupt, clean, corrupt, "noise").tolist() == [1.0, 1.0]
    # denoise: corrupt run patched; no effect (= corrupt) -> 0, fully restored -> 1
    assert patching_effect(corrupt, clean, corrupt, "denoise").tolist() == [0.0, 0.0]
    assert patching_effect(clean, clean, corrupt).tolist() == [1.0, 1.0]
    assert restored_logit_diff(1.5, 2.0, 1.0).item() == 0.5


def test_restored_logit_diff_refuses_equal_clean_and_corrupt():
    with pytest.raises(DTLensError, match=r"equal within tol=1e-05 at 1 entries.*\(0\.75, 0\.75\)"):
        restored_logit_diff(torch.zeros(2), torch.tensor([1.0, 0.75]), torch.tensor([0.0, 0.75]))
    with pytest.raises(ConfigError, match="direction must be 'denoise' or 'noise', got 'both'"):
        patching_effect(0.0, 1.0, 0.0, "both")


def test_metric_callables(hand_logits):
    metric = make_logit_diff_metric("left", "right")
    assert isinstance(metric, Metric)
    assert metric.name == "logit diff left - right at S[-1]"
    assert torch.equal(metric(hand_logits), torch.tensor([-2.0, 6.0]))
    prob = make_action_probability_metric(2, timestep=0)
    assert prob.name == "P(forward) at S[0]"
    assert torch.allclose(prob(hand_logits), hand_logits[:, 1].softmax(-1)[:, 2])
    entropy = make_action_entropy_metric(timestep=1)
    expected = -(hand_logits[:, 4].softmax(-1) * hand_logits[:, 4].log_softmax(-1)).sum(-1)
    assert torch.allclose(entropy(hand_logits), expected)
    model = build_model()
    no_bias = make_logit_diff_metric(0, 1, model=model, exclude_bias=True)
    assert no_bias.name.endswith("(no head bias)")


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda x: logit_diff(x[0], 0, 1),
            BatchError,
            r"\[batch, n_tokens, n_actions\].*got \[8, 7\]",
        ),
        (lambda x: logit_diff(x[:, :7], 0, 1), BatchError, r"7 token positions.*3T - 1 or 3T"),
        (
            lambda x: logit_diff(x, 0, 1, timestep=3),
            BatchError,
            r"timestep 3 is out of range.*-3\.\.2",
        ),
        (lambda x: logit_diff(x, 0, 7), BatchError, r"action 7 is out of range.*7 actions"),
        (lambda x: logit_diff(x, "jump", 0), BatchError, r"unknown action 'jump'.*left, right"),
        (lambda x: logit_diff(x, 0, 1, exclude_bias=True), DTLensError, "needs model="),
        (lambda x: action_entropy(x, tokens_per_step=4), ConfigError, r"tokens_per_step must be 3"),
    ],
)
def test_metric_errors_name_the_problem(hand_logits, call, error, message):
    with pytest.raises(error, match=message):
        call(hand_logits)


def test_tokens_per_step_must_agree_with_model():
    model = build_model()
    with pytest.raises(ConfigError, match="tokens_per_step=2 disagrees with the model's 3"):
        logit_diff(torch.zeros(1, 11, 7), 0, 1, model=model, tokens_per_step=2)
