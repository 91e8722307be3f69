"""Observation edits and set_rtg: new batches only, exact cells, invertible, checked input.

The instruction/target edits are checked against an independent expectation: the view
MiniGrid itself renders after the same object is swapped in the env's world grid.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dtlens.analysis.edits.observations import (
    compose,
    flip_targets,
    patch_observation,
    set_cell,
    set_rtg,
    swap_instruction,
)
from dtlens.env import COLOUR_NAMES, OBJECT_NAMES, STATE_NAMES, encode_observation
from dtlens.env.memory import MemoryS7FixedStartEnv
from dtlens.errors import BatchError, ObservationError
from dtlens.model import TrajectoryBatch
from tests.conftest import build_batch

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_batch(obs: torch.Tensor, padding_mask: torch.Tensor | None = None) -> TrajectoryBatch:
    b, t = obs.shape[:2]
    return TrajectoryBatch(
        obs=obs,
        actions=torch.zeros(b, t - 1, dtype=torch.long),
        rtg=torch.full((b, t), 0.9),
        timesteps=torch.arange(t).repeat(b, 1),
        padding_mask=padding_mask,
    )


def random_onehot_batch(seed: int, batch: int = 2, steps: int = 3) -> TrajectoryBatch:
    """Valid one-hot views with random (object, colour, state) in every cell."""
    g = torch.Generator().manual_seed(seed)
    image = torch.stack(
        [
            torch.randint(0, len(OBJECT_NAMES), (batch, steps, 7, 7), generator=g),
            torch.randint(0, len(COLOUR_NAMES), (batch, steps, 7, 7), generator=g),
            torch.randint(0, len(STATE_NAMES), (batch, steps, 7, 7), generator=g),
        ],
        dim=-1,
    )
    return make_batch(encode_observation(image))


# --------------------------------------------------------------------------- set_cell
def test_set_cell_hand_built_cell():
    obs = torch.zeros(1, 2, 7, 7, 20)
    obs[..., [1, 11, 17]] = 1.0  # every cell: empty, red, open
    obs[0, 1, 2, 6] = 0.0
    obs[0, 1, 2, 6, [5, 12, 17]] = 1.0  # a green key left of the agent at step 1
    batch = make_batch(obs)
    out = patch_observation(batch, set_cell(-1, 2, 6, object="ball", state="locked"))
    expected = torch.zeros(20)
    expected[6] = 1.0  # ball
    expected[12] = 1.0  # green (kept)
    expected[19] = 1.0  # locked
    assert torch.equal(out.obs[0, 1, 2, 6], expected)
    changed = (out.obs != obs).any(-1)
    assert changed.nonzero().tolist() == [[0, 1, 2, 6]]


def test_set_cell_all_timesteps_skips_padding():
    obs = torch.zeros(1, 3, 7, 7, 20)
    obs[:, 1:, :, :, [1, 11, 17]] = 1.0  # step 0 is all-zero padding
    batch = make_batch(obs)
    out = patch_observation(batch, set_cell("all", 0, 0, colour="blue"))
    assert not out.obs[0, 0].any()
    assert out.obs[0, 1:, 0, 0].nonzero().tolist() == [
        [0, 1],
        [0, 13],
        [0, 17],
        [1, 1],
        [1, 13],
        [1, 17],
    ]
    masked = make_batch(obs, padding_mask=torch.tensor([[False, False, True]]))
    out = patch_observation(masked, set_cell("all", 0, 0, colour="blue"))
    assert out.obs[0, 1, 0, 0, 11] == 1 and out.obs[0, 2, 0, 0, 13] == 1


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    timestep=st.integers(-3, 2),
    x=st.integers(0, 6),
    y=st.integers(0, 6),
    obj=st.none() | st.sampled_from(OBJECT_NAMES),
    colour=st.none() | st.sampled_from(COLOUR_NAMES),
    state=st.sampled_from(STATE_NAMES),
)
def test_set_cell_changes_only_that_cell_and_inverts(seed, timestep, x, y, obj, colour, state):
    batch = random_onehot_batch(seed)
    before = batch.obs.clone()
    out = patch_observation(batch, set_cell(timestep, x, y, object=obj, colour=colour, state=state))
    assert torch.equal(batch.obs, before)  # input untouched
    untouched = torch.ones(before.shape[:4], dtype=torch.bool)
    untouched[:, timestep, x, y] = False
    assert torch.equal(out.obs[untouched], before[untouched])
    cell, old = out.obs[:, timestep, x, y], before[:, timestep, x, y]
    for names, offset, value in (
        (OBJECT_NAMES, 0, obj),
        (COLOUR_NAMES, 11, colour),
        (STATE_NAMES, 17, state),
    ):
        block = slice(offset, offset + len(names))
        if value is None:
            assert torch.equal(cell[:, block], old[:, block])
        else:
            assert cell[:, block].argmax(-1).tolist() == [names.index(value)] * 2
            assert cell[:, block].sum(-1).tolist() == [1.0, 1.0]
    # setting the old attributes back restores the input exactly (rows may differ: per row)
    restored = out.obs.clone()
    for row in range(2):
        o, c, s = (
            int(old[row, sl].argmax()) for sl in (slice(0, 11), slice(11, 17), slice(17, 20))
        )
        back = set_cell(timestep, x, y, OBJECT_NAMES[o], COLOUR_NAMES[c], STATE_NAMES[s])
        restored[row] = patch_observation(out[row], back).obs[0]
    assert torch.equal(restored, before)


# ------------------------------------------------------ swap_instruction / flip_targets
def _swap_type(obj):
    from minigrid.core.world_object import Ball, Key

    return (Ball if obj.type == "key" else Key)(obj.color)


def _world_views(env: MemoryS7FixedStartEnv) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(view, view with the instruction swapped, view with the targets swapped), each
    rendered by MiniGrid after editing the env's world, then the world is restored."""
    view = env.gen_obs()["image"]
    targets = [env.top_target_pos, env.bottom_target_pos]
    # the instruction: carried, or the one key/ball not on a target square
    if env.carrying is not None:
        carried = env.carrying
        env.carrying = _swap_type(carried)
        swapped = env.gen_obs()["image"]
        env.carrying = carried
    else:
        (pos,) = [
            (x, y)
            for x in range(env.width)
            for y in range(env.height)
            if (x, y) not in targets
            and env.grid.get(x, y) is not None
            and env.grid.get(x, y).type in ("key", "ball")
        ]
        obj = env.grid.get(*pos)
        env.grid.set(*pos, _swap_type(obj))
        swapped = env.gen_obs()["image"]
        env.grid.set(*pos, obj)
    originals = [env.grid.get(*p) for p in targets]
    for p, obj in zip(targets, originals, strict=True):
        env.grid.set(*p, _swap_type(obj))
    flipped = env.gen_obs()["image"]
    for p, obj in zip(targets, originals, strict=True):
        env.grid.set(*p, obj)
    return view, swapped, flipped


def _random_walk(instruction: str, top: str, actions: list[int]):
    env = MemoryS7FixedStartEnv(max_steps=100)
    env.reset(seed=0, options={"instruction": instruction, "top": top})
    views, swapped, flipped = [], [], []
    for action in [None, *actions]:
        if action is not None:
            _, _, terminated, _, _ = env.step(action)
            if terminated:
                break
        v, s, f = _world_views(env)
        views.append(v), swapped.append(s), flipped.append(f)
    return [
        encode_observation(torch.as_tensor(np.stack(x)))[None] for x in (views, swapped, flipped)
    ]


@SETTINGS
@given(
    instruction=st.sampled_from(["key", "ball"]),
    top=st.sampled_from(["key", "ball"]),
    actions=st.lists(st.sampled_from([0, 1, 2, 2, 2, 3, 4]), min_size=1, max_size=25),
)
@example("key", "ball", [0, 3, 1, 2, 4, 1, 2, 2, 0])  # pick up, carry, drop in the corridor
@example("ball", "key", [2, 2, 2, 2, 0])  # the optimal route to the decision square, turned up
def test_swap_and_flip_match_the_world_edited_in_the_env(instruction, top, actions):
    views, swapped, flipped = _random_walk(instruction, top, actions)
    batch = make_batch(views)
    assert torch.equal(patch_observation(batch, swap_instruction()).obs, swapped)
    assert torch.equal(patch_observation(batch, flip_targets()).obs, flipped)
    twice = patch_observation(batch, [swap_instruction(), swap_instruction()])
    assert torch.equal(twice.obs, views)
    assert torch.equal(patch_observation(batch, [flip_targets(), flip_targets()]).obs, views)


def test_swap_instruction_on_the_start_view_hand_checked():
    env = MemoryS7FixedStartEnv()
    obs, _ = env.reset(seed=0, options={"instruction": "key", "top": "ball"})
    batch = make_batch(
        encode_observation(torch.as_tensor(obs["image"]))[None, None].repeat(1, 2, 1, 1, 1)
    )
    out = patch_observation(batch, swap_instruction())
    # instruction at view (2, 6), left of the agent: key (5) -> ball (6), green kept
    assert out.obs[0, 0, 2, 6].nonzero().flatten().tolist() == [6, 12, 17]
    assert ((out.obs != batch.obs).any(-1)).nonzero()[:, 1:].tolist() == [[0, 2, 6], [1, 2, 6]]
    flipped = patch_observation(batch, flip_targets())
    # targets 4 squares ahead, 2 to each side: ball at (1, 2) (up), key at (5, 2) (down)
    assert flipped.obs[0, 0, 1, 2, 5] == 1 and flipped.obs[0, 0, 5, 2, 6] == 1
    assert ((flipped.obs != batch.obs).any(-1))[0, 0].nonzero().tolist() == [[1, 2], [5, 2]]


def test_memory_edits_skip_padding_and_reject_foreign_views():
    env = MemoryS7FixedStartEnv()
    obs, _ = env.reset(seed=0, options={"instruction": "ball", "top": "ball"})
    view = encode_observation(torch.as_tensor(obs["image"]))
    padded = make_batch(torch.stack([torch.zeros_like(view), view])[None])
    out = patch_observation(padded, swap_instruction())
    assert not out.obs[0, 0].any() and out.obs[0, 1, 2, 6, 5] == 1
    masked = make_batch(padded.obs.clone(), padding_mask=torch.tensor([[False, True]]))
    masked.obs[0, 0] = view  # a real-looking view marked as padding is left alone
    assert torch.equal(patch_observation(masked, swap_instruction()).obs[0, 0], view)
    foreign = random_onehot_batch(3)
    foreign.obs[:, :, 0, 0] = 0
    foreign.obs[:, :, 0, 0, [5, 12, 17]] = 1  # a key in a view with random walls
    with pytest.raises(ObservationError, match=r"batch row 0, timestep 0.*matches no agent pose"):
        patch_observation(foreign, swap_instruction())


# ---------------------------------------------------------------- composition, purity
def test_compose_and_list_apply_in_order():
    batch = random_onehot_batch(7)
    first, second = set_cell(0, 1, 1, object="key"), set_cell(0, 1, 1, object="ball")
    via_list = patch_observation(batch, [first, second])
    via_compose = patch_observation(batch, compose(first, second))
    stepwise = patch_observation(patch_observation(batch, first), second)
    assert torch.equal(via_list.obs, stepwise.obs) and torch.equal(via_compose.obs, stepwise.obs)
    assert via_list.obs[:, 0, 1, 1, 6].tolist() == [1.0, 1.0]
    assert compose(compose(first, second), first).edits == (first, second, first)
    reversed_order = patch_observation(batch, [second, first])
    assert reversed_order.obs[:, 0, 1, 1, 5].tolist() == [1.0, 1.0]


def test_patch_observation_never_mutates_input():
    batch = random_onehot_batch(11)
    fields = {k: getattr(batch, k).clone() for k in ("obs", "actions", "rtg", "timesteps")}

    def in_place(obs):
        obs.zero_()  # a callable edit may write into the copy it receives
        return obs

    out = patch_observation(batch, [set_cell("all", 3, 3, object="wall"), in_place])
    for name, value in fields.items():
        assert torch.equal(getattr(batch, name), value), name
    assert not out.obs.any() and out.obs.data_ptr() != batch.obs.data_ptr()
    out2 = set_rtg(batch, 0.0)
    assert torch.equal(batch.rtg, fields["rtg"]) and not out2.rtg.any()


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(timestep=0, x=7, y=0, object="key"), r"x=7 is outside the view.*0\.\.6"),
        (dict(timestep=0, x=0, y=-1, object="key"), r"y=-1 is outside the view"),
        (dict(timestep=0, x=0, y=0, object="dragon"), r"unknown object 'dragon'.*key, ball"),
        (dict(timestep=0, x=0, y=0, colour="pink"), r"unknown colour 'pink'.*red, green"),
        (dict(timestep=0, x=0, y=0, state="ajar"), r"unknown state 'ajar'.*open, closed, locked"),
        (dict(timestep=0, x=0, y=0), r"at least one of object=, colour=, state="),
        (dict(timestep="last", x=0, y=0, object="key"), r"timestep must be an int or 'all'"),
    ],
)
def test_set_cell_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ObservationError, match=message):
        set_cell(**kwargs)


def test_apply_time_errors_name_the_problem():
    batch = random_onehot_batch(0, steps=3)
    with pytest.raises(ObservationError, match=r"timestep 3 is out of range.*3 steps.*-3\.\.2"):
        patch_observation(batch, set_cell(3, 0, 0, object="key"))
    padding = make_batch(torch.zeros(1, 2, 7, 7, 20))
    with pytest.raises(ObservationError, match=r"0 hot colour channels.*pass colour="):
        patch_observation(padding, set_cell(0, 0, 0, object="key"))
    with pytest.raises(ObservationError, match=r"returned \[2, 3\]"):
        patch_observation(batch, lambda obs: obs[:, :, 0, 0, 0])
    with pytest.raises(ObservationError, match=r"is not an edit"):
        patch_observation(batch, [set_cell(0, 0, 0, object="key"), 42])
    with pytest.raises(
        ObservationError, match=r"views \[batch, step, 7, 7, 20\], got \[2, 4, 7, 7, 3\]"
    ):
        patch_observation(build_batch(obs_shape=(7, 7, 3)), flip_targets())


# ---------------------------------------------------------------------------- set_rtg
def test_set_rtg_all_and_chosen_timesteps():
    batch = build_batch(batch_size=2, n_steps=4)
    everywhere = set_rtg(batch, 0.0)
    assert torch.equal(everywhere.rtg, torch.zeros(2, 4))
    chosen = set_rtg(batch, 0.5, timesteps=[0, -1])
    expected = batch.rtg.clone()
    expected[:, 0] = 0.5
    expected[:, 3] = 0.5
    assert torch.equal(chosen.rtg, expected)
    per_row = set_rtg(batch, torch.tensor([[0.1], [0.2]]), timesteps=2)
    assert per_row.rtg[:, 2].tolist() == pytest.approx([0.1, 0.2])
    assert torch.equal(per_row.obs, batch.obs)


def test_set_rtg_errors():
    batch = build_batch(n_steps=4)
    with pytest.raises(
        BatchError, match=r"RTG timesteps \[4\] are invalid for a window of 4 steps"
    ):
        set_rtg(batch, 0.0, timesteps=[1, 4])
    with pytest.raises(BatchError, match=r"does not broadcast to \[batch=2, timesteps=4\]"):
        set_rtg(batch, torch.zeros(3))
    clone_batch = batch.replace(rtg=None)
    with pytest.raises(BatchError, match="has no rtg"):
        set_rtg(clone_batch, 0.0)
