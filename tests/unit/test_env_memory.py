"""MiniGrid-MemoryS7FixedStart-v0: registration, forced layouts, dynamics, make_env."""

from __future__ import annotations

import importlib
import warnings

import gymnasium
import pytest
from minigrid.core.actions import Actions

import dtlens.env
from dtlens.env import (
    MEMORY_ENV_ID,
    SCENARIOS,
    MemoryS7FixedStartEnv,
    Scenario,
    make_env,
    optimal_actions,
    register_envs,
)
from dtlens.errors import EnvError

# Layout read off MiniGrid's MemoryEnv geometry for size 7 (hallway_end = 4).
START, INSTRUCTION_CELL, TOP_CELL, BOTTOM_CELL = (1, 3), (1, 2), (5, 1), (5, 5)
F, L, R = Actions.forward, Actions.left, Actions.right
OTHER = {"key": "ball", "ball": "key"}


@pytest.fixture
def env():
    e = gymnasium.make(MEMORY_ENV_ID, max_steps=50)
    yield e
    e.close()


def run(env, actions):
    """Step through ``actions``; return the list of (reward, terminated, truncated)."""
    return [env.step(a)[1:4] for a in actions]


def test_registration_is_idempotent_and_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        register_envs()
        register_envs()
        importlib.reload(dtlens.env)
    assert MEMORY_ENV_ID in gymnasium.registry
    assert gymnasium.spec(MEMORY_ENV_ID).entry_point.endswith(":MemoryS7FixedStartEnv")


def test_scenarios_constant():
    assert [(s.instruction, s.top) for s in SCENARIOS] == [
        ("key", "key"),
        ("key", "ball"),
        ("ball", "key"),
        ("ball", "ball"),
    ]
    assert [s.name for s in SCENARIOS][:2] == ["key/top-key", "key/top-ball"]
    assert Scenario("ball", "key").target == "bottom"
    with pytest.raises(EnvError, match="'box'"):
        Scenario("box", "key")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_forced_layout(env, scenario):
    obs, info = env.reset(seed=123, options=scenario.options)
    u = env.unwrapped
    assert (tuple(int(v) for v in u.agent_pos), u.agent_dir) == (START, 0)
    for cell, expected in [
        (INSTRUCTION_CELL, scenario.instruction),
        (TOP_CELL, scenario.top),
        (BOTTOM_CELL, OTHER[scenario.top]),
    ]:
        obj = u.grid.get(*cell)
        assert (obj.type, obj.color) == (expected, "green")
    # success square: the one between the corridor and the matching target
    match_top = scenario.instruction == scenario.top
    assert u.success_pos == ((5, 2) if match_top else (5, 4))
    assert u.failure_pos == ((5, 4) if match_top else (5, 2))
    assert (u.instruction, u.top) == (scenario.instruction, scenario.top)
    assert u.scenario == scenario
    assert info == {**scenario.options, "scenario": scenario.name}
    # First view: instruction left of the agent (view cell x=2, y=6); both targets are
    # visible at the end of the corridor, upper one on the left (1, 2), lower on the right.
    index = {"key": 5, "ball": 6}  # MiniGrid's OBJECT_TO_IDX
    assert obs["image"][2, 6, 0] == index[scenario.instruction]
    assert obs["image"][1, 2, 0] == index[scenario.top]
    assert obs["image"][5, 2, 0] == index[OTHER[scenario.top]]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_optimal_actions_reach_the_matching_target(env, scenario):
    turn = L if scenario.instruction == scenario.top else R  # left = towards y=0 (up)
    expected = (F, F, F, F, turn, F)
    assert optimal_actions(scenario.instruction, scenario.top) == expected
    env.reset(seed=7, options=scenario.options)
    results = run(env, expected)
    n = len(expected)
    assert [t for _, t, _ in results] == [False] * (n - 1) + [True]
    assert results[-1][0] == pytest.approx(1 - 0.9 * n / 50)
    assert all(r == 0 for r, _, _ in results[:-1])
    assert not any(tr for _, _, tr in results)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_wrong_target_gives_zero_and_terminates(env, scenario):
    wrong_turn = R if scenario.instruction == scenario.top else L
    assert optimal_actions(scenario.instruction, scenario.top, to="other") == (
        F,
        F,
        F,
        F,
        wrong_turn,
        F,
    )
    env.reset(seed=7, options=scenario.options)
    reward, terminated, truncated = run(env, [F, F, F, F, wrong_turn, F])[-1]
    assert (reward, terminated, truncated) == (0.0, True, False)


def test_doing_nothing_truncates_at_max_steps():
    env = gymnasium.make(MEMORY_ENV_ID, max_steps=12)
    env.reset(seed=0)
    results = run(env, [Actions.done] * 12)
    assert [tr for _, _, tr in results] == [False] * 11 + [True]
    assert all(r == 0 and not t for r, t, _ in results)


def test_max_steps_changes_reward():
    env = gymnasium.make(MEMORY_ENV_ID, max_steps=10)
    env.reset(seed=0, options={"instruction": "ball", "top": "key"})
    assert run(env, optimal_actions("ball", "key"))[-1][0] == pytest.approx(1 - 0.9 * 6 / 10)


def test_random_scenarios_come_from_the_seed():
    env_a = gymnasium.make(MEMORY_ENV_ID)
    env_b = gymnasium.make(MEMORY_ENV_ID)
    seen = set()
    for seed in range(40):
        name_a = env_a.reset(seed=seed)[1]["scenario"]
        assert env_b.reset(seed=seed)[1]["scenario"] == name_a
        seen.add(name_a)
    assert seen == {s.name for s in SCENARIOS}


def test_partial_forcing_keeps_the_other_fact_random(env):
    infos = [env.reset(seed=s, options={"instruction": "ball"})[1] for s in range(20)]
    assert {i["instruction"] for i in infos} == {"ball"}
    assert {i["top"] for i in infos} == {"key", "ball"}
    # forcing one fact leaves the seed's draw of the other unchanged
    for s in range(5):
        free = env.reset(seed=s)[1]["top"]
        assert env.reset(seed=s, options={"instruction": "key"})[1]["top"] == free


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        ({"instruction": "box"}, ["instruction", "'box'", "'key'", "'ball'"]),
        ({"top": "up"}, ["top", "'up'", "'key'", "'ball'"]),
        ({"colour": "key"}, ["colour", "instruction", "top"]),
        ("key", ["dict", "str"]),
    ],
)
def test_bad_options_raise(env, options, fragments):
    with pytest.raises(EnvError) as err:
        env.reset(seed=0, options=options)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_bad_arguments_raise():
    with pytest.raises(EnvError, match="max_steps"):
        MemoryS7FixedStartEnv(max_steps=0)
    with pytest.raises(EnvError, match="'box'"):
        optimal_actions("box", "key")
    with pytest.raises(EnvError, match="'nowhere'"):
        optimal_actions("key", "key", to="nowhere")


def test_pickup_takes_the_instruction_unless_mapped_to_toggle():
    for as_toggle, carried in [(False, "key"), (True, None)]:
        env = MemoryS7FixedStartEnv(pickup_as_toggle=as_toggle)
        env.reset(seed=0, options={"instruction": "key", "top": "ball"})
        run(env, [L, Actions.pickup])  # face the instruction, pick it up
        assert (env.carrying.type if env.carrying else None) == carried


@pytest.mark.parametrize(
    "env_id",
    [MEMORY_ENV_ID, "MiniGrid-Dynamic-Obstacles-8x8-v0", "MiniGrid-DoorKey-6x6-v0"],
)
def test_make_env_works_for_minigrid_ids(env_id):
    env = make_env(env_id, max_steps=17, seed=3)
    obs, _ = env.reset()
    assert obs["image"].shape == (7, 7, 20)
    assert set(obs) == {"image", "direction", "mission"}
    assert env.observation_space.contains(obs)
    assert env.unwrapped.max_steps == 17
    raw = make_env(env_id, one_hot=False).reset(seed=3)[0]["image"]
    assert raw.shape == (7, 7, 3)


def test_make_env_seed_equals_reset_seed():
    seeded = make_env(MEMORY_ENV_ID, seed=11, one_hot=False)
    plain = gymnasium.make(MEMORY_ENV_ID)
    assert seeded.reset()[1] == plain.reset(seed=11)[1]
    assert (seeded.unwrapped.grid.encode() == plain.unwrapped.grid.encode()).all()


def test_make_env_rejects_unknown_and_non_minigrid_ids():
    with pytest.raises(EnvError) as err:
        make_env("MiniGrid-MemoryS7FixedStrat-v0")
    assert "MiniGrid-MemoryS7FixedStrat-v0" in str(err.value)
    assert MEMORY_ENV_ID in str(err.value)  # suggested as a close match
    with pytest.raises(EnvError, match="not a MiniGrid env"):
        make_env("CartPole-v1")
    with pytest.raises(EnvError, match="max_steps"):
        make_env(MEMORY_ENV_ID, max_steps=-1)
