"""Padding follows the model: the scenario builders pad a window the way the model asks.

- ``layout_batch(model=...)`` gives a masked window for a dtlens model and a window
  whose padding runs as tokens for the original project's checkpoint; a padded window
  with neither a model nor a padding raises (the choice is never guessed), one that
  needs no padding does not; a named padding wins over the model's.
- The decision the model makes on that window at the decision square is the one a
  greedy rollout (:func:`dtlens.training.evaluate.rollout`, which pads as the model
  asks) makes at the same square: the same distribution to float precision, with the
  model's own padding only. With the other padding the original checkpoint turns the
  wrong way in key/top-key, and the shipped MemoryDT in two layouts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import dtlens
from dtlens.analysis.edits.scenarios import (
    instruction_swap_pair,
    layout_batch,
    model_instruction_pairs,
    resolve_padding,
    rtg_pair,
)
from dtlens.env import ACTION_INDEX, SCENARIOS
from dtlens.errors import ConfigError
from dtlens.model.checkpoint import WEIGHTS_FILE
from dtlens.training.evaluate import rollout
from tests.conftest import ORIGINAL_DT, build_model

SHIPPED = Path(dtlens.__file__).resolve().parent / "pretrained" / "memorydt"
DECISION_STEP = 4  # forward x4 from the start, then the turn at the decision square

pytestmark = pytest.mark.usefixtures("one_thread")


def test_without_a_model_a_padded_window_must_name_its_padding():
    with pytest.raises(ConfigError, match=r"9-step window of key/top-key has 4 padding step"):
        layout_batch("key/top-key")
    with pytest.raises(ConfigError, match="pass model="):
        instruction_swap_pair("key/top-ball", rtg=0.0)
    with pytest.raises(ConfigError, match="padding must be 'mask' or 'tokens'"):
        layout_batch("key/top-key", padding="zeros")
    # nothing to pad: no padding to choose
    assert layout_batch("key/top-key", n_steps=None).padding_mask is None
    assert layout_batch("key/top-key", n_steps=5).n_steps == 5
    assert layout_batch("key/top-key", n_steps=3).timesteps.tolist() == [[2, 3, 4]]
    assert resolve_padding("tokens", None) == "tokens"


def test_the_model_decides_the_padding_unless_one_is_named():
    masked_model = build_model(n_ctx=26)
    assert masked_model.context_padding == "mask"
    tokens_model = build_model(n_ctx=26)
    tokens_model.metadata["context_padding"] = "tokens"
    masked = layout_batch("key/top-key", model=masked_model)
    as_tokens = layout_batch("key/top-key", model=tokens_model)
    assert masked.padding_mask.tolist() == [[False] * 4 + [True] * 5]
    assert as_tokens.padding_mask is None
    assert torch.equal(masked.obs, as_tokens.obs) and torch.equal(masked.actions, as_tokens.actions)
    assert layout_batch("key/top-key", padding="tokens", model=masked_model).padding_mask is None
    # the pair builders pass it on, and an RTG pair keeps its source's padding
    pair = instruction_swap_pair("ball/top-key", model=tokens_model)
    assert pair.clean.padding_mask is None and pair.corrupt.padding_mask is None
    assert rtg_pair(
        instruction_swap_pair("ball/top-key", model=masked_model)
    ).corrupt.padding_mask.any()
    assert all(p.clean.padding_mask is not None for p in model_instruction_pairs(masked_model))


def _decisions(model, padding: str | None):
    """Each layout's action distribution at the decision square: from the window
    layout_batch builds, and from a greedy rollout that walked there."""
    result = rollout(model, initial_rtg=0.9, n_episodes=4, seeds=0, layouts="balanced",
                     max_steps=12, record=True)  # fmt: skip
    assert result.layouts == tuple(s.name for s in SCENARIOS)
    windows, rolled = [], []
    for i, scenario in enumerate(SCENARIOS):
        probs = result.probs[i]
        walked = probs[:DECISION_STEP].argmax(-1).tolist()
        assert walked == [ACTION_INDEX["forward"]] * DECISION_STEP, scenario.name  # at the square
        rolled.append(probs[DECISION_STEP])
        batch = layout_batch(scenario, rtg=0.9, padding=padding, model=model)
        with torch.no_grad():
            windows.append(model(batch)[0, -1].softmax(-1).to(probs))
    return torch.stack(windows), torch.stack(rolled)


def _check(model, own: str, other: str, flipped: list[str]):
    window, rolled = _decisions(model, None)
    assert torch.allclose(window, rolled, atol=1e-5)  # its own padding: the rollout's decision
    assert window.argmax(-1).tolist() == rolled.argmax(-1).tolist()
    assert torch.allclose(_decisions(model, own)[0], window)
    wrong, _ = _decisions(model, other)
    changed = (wrong.argmax(-1) != rolled.argmax(-1)).tolist()
    assert [s.name for s, c in zip(SCENARIOS, changed, strict=True) if c] == flipped


@pytest.mark.skipif(not ORIGINAL_DT.exists(), reason=f"{ORIGINAL_DT} is absent (../shared)")
def test_original_checkpoint_decides_as_its_rollout_only_with_token_padding():
    model = dtlens.load(ORIGINAL_DT).eval()
    assert model.context_padding == "tokens"
    _check(model, own="tokens", other="mask", flipped=["key/top-key"])


@pytest.mark.skipif(
    not (SHIPPED / WEIGHTS_FILE).exists(), reason=f"the shipped MemoryDT is not built ({SHIPPED})"
)
def test_shipped_memorydt_decides_as_its_rollout_only_with_masked_padding():
    model = dtlens.load("memorydt").eval()
    assert model.context_padding == "mask"
    _check(model, own="mask", other="tokens", flipped=["key/top-key", "ball/top-ball"])
