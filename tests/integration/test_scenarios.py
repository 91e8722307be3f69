"""The seed's clean/corrupt pairs, checked against the Memory env's own grid and views."""

from __future__ import annotations

import pytest
import torch

from dtlens.analysis.edits.scenarios import (
    PatchingPair,
    all_layouts,
    instruction_swap_pair,
    layout_batch,
    rtg_pair,
)
from dtlens.analysis.metrics import logit_diff
from dtlens.env import OBJECT_NAMES, Scenario
from dtlens.env.memory import MemoryS7FixedStartEnv
from dtlens.errors import BatchError, DTLensError, EnvError, ObservationError
from tests.conftest import ORIGINAL_DT, requires_shared

LAYOUTS = all_layouts()


def _instruction_cell(scenario: Scenario) -> tuple[str, tuple[int, int]]:
    """The instruction's type per the env's grid, and its view cell at the start."""
    env = MemoryS7FixedStartEnv()
    env.reset(seed=0, options=scenario.options)
    world = env.instruction_pos
    return env.grid.get(*world).type, tuple(int(v) for v in env.get_view_coords(*world))


def test_all_layouts_are_the_four_scenarios():
    assert {(s.instruction, s.top) for s in LAYOUTS} == {
        ("key", "key"),
        ("key", "ball"),
        ("ball", "key"),
        ("ball", "ball"),
    }


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda s: s.name)
def test_instruction_swap_changes_only_the_instruction_cell(layout):
    expected_type, (vx, vy) = _instruction_cell(layout)
    assert expected_type == layout.instruction
    pair = instruction_swap_pair(layout, n_steps=None)
    assert isinstance(pair, PatchingPair) and pair.clean.n_steps == 5
    clean, corrupt = pair.clean.obs, pair.corrupt.obs
    assert clean[0, 0, vx, vy, OBJECT_NAMES.index(expected_type)] == 1
    diff = (clean != corrupt).any(-1).nonzero().tolist()
    assert diff == [[0, 0, vx, vy]]  # only step 0 shows the instruction on this route
    other = "ball" if expected_type == "key" else "key"
    assert corrupt[0, 0, vx, vy, OBJECT_NAMES.index(other)] == 1
    assert torch.equal(clean[0, 0, vx, vy, 11:], corrupt[0, 0, vx, vy, 11:])  # colour, state
    for name in ("actions", "rtg", "timesteps"):
        assert torch.equal(getattr(pair.clean, name), getattr(pair.corrupt, name))
    # facing east at the decision square, the upper target is on the left
    assert (pair.answer_action, pair.wrong_action) == ((0, 1) if layout.target == "top" else (1, 0))


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda s: s.name)
def test_swapped_views_are_the_other_layouts_views(layout):
    """Independent check: the env renders the swapped instruction itself."""
    other = Scenario("ball" if layout.instruction == "key" else "key", layout.top)
    corrupt = instruction_swap_pair(layout, padding="tokens").corrupt
    assert torch.equal(corrupt.obs, layout_batch(other, padding="tokens").obs)


def test_seed_recipe_window_is_left_padded_as_tokens():
    pair = instruction_swap_pair("key/top-key", rtg=0.0, padding="tokens")  # the exception
    clean = pair.clean
    assert clean.n_steps == 9 and clean.padding_mask is None
    assert not clean.obs[0, :4].any() and clean.obs[0, 4:].flatten(1).any(-1).all()
    assert clean.actions.tolist() == [[7, 7, 7, 7, 2, 2, 2, 2]]
    assert clean.timesteps.tolist() == [[0, 0, 0, 0, 0, 1, 2, 3, 4]]
    assert torch.equal(clean.rtg, torch.zeros(1, 9))
    assert (pair.clean.obs != pair.corrupt.obs).any(-1).nonzero()[:, 1].tolist() == [4]
    masked = instruction_swap_pair("key/top-key", padding="mask").clean
    assert masked.padding_mask.tolist() == [[False] * 4 + [True] * 5]
    # the route ends facing the wall at the decision square: wall right ahead at (3, 5)
    assert clean.obs[0, -1, 3, 5, OBJECT_NAMES.index("wall")] == 1


def test_rtg_pair():
    source = instruction_swap_pair("ball/top-key", padding="tokens")
    pair = rtg_pair(source)
    assert torch.equal(pair.clean.rtg, torch.full((1, 9), 0.9))
    assert torch.equal(pair.corrupt.rtg, torch.zeros(1, 9))
    assert torch.equal(pair.clean.obs, source.clean.obs)
    assert torch.equal(pair.corrupt.obs, source.clean.obs)
    assert (pair.answer_action, pair.wrong_action) == (source.answer_action, source.wrong_action)
    from_batch = rtg_pair(source.clean, 0.0, 0.5, answer_action="left", wrong_action="right")
    assert (from_batch.answer_action, from_batch.wrong_action) == (0, 1)
    assert "RTG 0.0 -> 0.5" in from_batch.description


def test_custom_routes_and_errors():
    # look at the instruction (left), turn back, walk to the decision square: 7 views
    look = instruction_swap_pair("key/top-ball", actions=[0, 1, 2, 2, 2, 2], padding="mask")
    assert (look.answer_action, look.wrong_action) == (1, 0)
    changed = (look.clean.obs != look.corrupt.obs).any(-1).nonzero()
    assert changed[:, 1].tolist() == [2, 3, 4]  # the three views at the start square
    assert changed[1, 2:].tolist() == [3, 5]  # facing it: right in front of the agent
    with pytest.raises(EnvError, match="does not end at the decision square"):
        instruction_swap_pair("key/top-ball", actions=[2, 2], padding="mask")
    custom = instruction_swap_pair(
        "key/top-ball", actions=[2, 2], padding="mask", answer_action="forward", wrong_action="left"
    )
    assert (custom.answer_action, custom.wrong_action) == (2, 0)
    with pytest.raises(EnvError, match=r"action 5 \(forward\) of the route ends the episode"):
        layout_batch("key/top-ball", actions=[2, 2, 2, 2, 1, 2])
    with pytest.raises(
        ObservationError, match="no step of the 1-step window shows the instruction"
    ):
        instruction_swap_pair("key/top-key", n_steps=1)
    with pytest.raises(EnvError, match=r"unknown layout 'key/top-box'.*'key/top-key'"):
        layout_batch("key/top-box")
    with pytest.raises(EnvError, match=r"invalid action 'jump'"):
        layout_batch("key/top-key", actions=["jump"])
    with pytest.raises(DTLensError, match="needs answer_action= and wrong_action="):
        rtg_pair(layout_batch("key/top-key", padding="mask"))
    with pytest.raises(BatchError, match="same window shape"):
        PatchingPair(
            layout_batch("key/top-key", padding="mask"),
            layout_batch("key/top-key", n_steps=None),
            "",
            0,
            1,
        )


@pytest.fixture(scope="module")
def original_dt():
    from dtlens.model.checkpoint import load

    return load(ORIGINAL_DT).eval()


@requires_shared(ORIGINAL_DT)
@torch.no_grad()
@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda s: s.name)
def test_original_model_follows_the_instruction_and_the_swap_flips_it(original_dt, layout):
    pair = instruction_swap_pair(layout, rtg=0.9, model=original_dt)
    clean = logit_diff(
        original_dt(pair.clean), pair.answer_action, pair.wrong_action, model=original_dt
    )
    corrupt = logit_diff(
        original_dt(pair.corrupt), pair.answer_action, pair.wrong_action, model=original_dt
    )
    assert clean.item() > 1.0  # turns towards the target matching the instruction
    assert corrupt.item() < -1.0  # with the swapped instruction, towards the other one
