"""The Boltzmann planner's logits are exact optimal Q-values, checked against values
derived by hand from the Memory map (see docs/env.md):

      x 0123456
    y 0 #######
      1 #####T#      the agent starts at (1, 3) facing east; entering (5, 2) or (5, 4)
      2 #I  #+#      ends the episode; (4, 3) is the only way from the start room to the
      3 #A    #      targets; reward 1 - 0.9 n / max_steps after n steps at the match.
      4 #   #+#
      5 #####B#
      6 #######
"""

from __future__ import annotations

import math

import gymnasium
import numpy as np
import pytest
import torch

from dtlens.data.agents.base import action_probabilities
from dtlens.data.agents.planner import BoltzmannPlanner
from dtlens.env import SCENARIOS, Scenario, make_env
from dtlens.errors import ConfigError, EnvError, ObservationError

LEFT, RIGHT, FORWARD, PICKUP, DROP, TOGGLE, DONE = range(7)
ENV_ID = "MiniGrid-MemoryS7FixedStart-v0"


def reset(scenario: Scenario, max_steps: int = 50):
    env = make_env(ENV_ID, max_steps=max_steps, one_hot=False)
    obs, _ = env.reset(seed=0, options=scenario.options)
    return env, obs


def image(obs) -> torch.Tensor:
    return torch.as_tensor(obs["image"])[None]


def steps_to_success(logits: torch.Tensor, max_steps: int = 50) -> list[float]:
    """Invert logit = max_steps / 0.9 - n (valid where success is still reachable)."""
    return [round(v, 4) for v in (max_steps / 0.9 - logits[0].double()).tolist()]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_greedy_planner_is_optimal_in_every_layout(scenario):
    # Shortest path by hand: 4 forward to (5, 3), turn towards the matching target
    # (left = up to (5, 2) when it is the top one), 1 forward: n = 6 steps.
    turn = LEFT if scenario.target == "top" else RIGHT
    for max_steps in (50, 20):
        env, obs = reset(scenario, max_steps)
        planner = BoltzmannPlanner([env])
        state, done, actions, total = planner.initial_state(1), None, [], 0.0
        terminated = truncated = False
        while not (terminated or truncated):
            logits, state = planner.act(image(obs), state, done)
            action = int(action_probabilities(logits, temperature=0).argmax())
            obs, reward, terminated, truncated, _ = env.step(action)
            actions.append(action)
            total += reward
        assert actions == [FORWARD] * 4 + [turn, FORWARD]
        assert terminated
        assert total == pytest.approx(1 - 0.9 * 6 / max_steps)


def test_start_state_logits_and_boltzmann_distribution():
    # At the start (facing east, instruction in view): forward is on the shortest path
    # (6 steps); pickup/drop/toggle/done change nothing here (nothing to pick up in front,
    # nothing carried), so they cost one wasted step (7); turning left or right costs the
    # turn and the turn back (8).
    env, obs = reset(Scenario("key", "ball"))
    planner = BoltzmannPlanner([env])
    logits, _ = planner.act(image(obs), planner.initial_state(1))
    hand_steps = [8, 8, 6, 7, 7, 7, 7]
    assert steps_to_success(logits) == hand_steps
    for temperature in (0.5, 1.0, 5.0):
        weights = [math.exp(-n / temperature) for n in hand_steps]
        expected = torch.tensor([w / sum(weights) for w in weights])
        probs = action_probabilities(logits, temperature)[0]
        torch.testing.assert_close(probs, expected.float(), rtol=1e-5, atol=1e-6)
    # temperature 1: one wasted step is e times less likely than the best action
    probs = action_probabilities(logits, 1.0)[0]
    assert float(probs[FORWARD] / probs[PICKUP]) == pytest.approx(math.e, rel=1e-5)


def test_logit_scale_multiplies_logits():
    env, obs = reset(Scenario("ball", "ball"))
    logits_2, _ = BoltzmannPlanner([env], logit_scale=2.0).act(image(obs), torch.tensor([-1]))
    expected = 2 * (50 / 0.9 - torch.tensor([8.0, 8, 6, 7, 7, 7, 7]))
    torch.testing.assert_close(logits_2[0], expected)


def test_dropping_the_instruction_object_in_the_corridor_is_priced_exactly():
    # key/top-key: left (face the key), pickup, right, forward, forward -> (3, 3) facing
    # east, carrying the key, after 5 steps. Success is 4 more steps away (forward to
    # (4, 3) and (5, 3), left, forward). Dropping the key at (4, 3) blocks the only way,
    # so drop costs drop + pickup + 4 = 6, one more than a no-op step (1 + 4).
    env, obs = reset(Scenario("key", "key"))
    for action in (LEFT, PICKUP, RIGHT, FORWARD, FORWARD):
        obs, *_ = env.step(action)
    assert env.unwrapped.carrying is not None and tuple(env.unwrapped.agent_pos) == (3, 3)
    planner = BoltzmannPlanner([env])
    logits, _ = planner.act(image(obs), planner.initial_state(1))
    k = 5
    assert steps_to_success(logits) == [k + n for n in (6, 6, 4, 5, 6, 5, 5)]

    # and after the drop the planner plans the pickup: it is the best action
    obs, *_ = env.step(DROP)
    logits, _ = planner.act(image(obs), planner.initial_state(1))
    assert steps_to_success(logits)[PICKUP] == k + 1 + 5
    assert int(logits.argmax()) == PICKUP


def test_instruction_must_be_seen_and_is_remembered():
    # Walk forward 4 times with the planner watching: at (5, 3) facing east the
    # instruction (behind the agent) is out of view but remembered. With the key
    # instruction and the key on top: left, forward (k + 2); forward is blocked by the
    # wall (a wasted step, then left, forward: k + 3); right needs two more turns (k + 4).
    env, obs = reset(Scenario("key", "key"))
    planner = BoltzmannPlanner([env])
    state = planner.initial_state(1)
    for _ in range(4):
        _, state = planner.act(image(obs), state)
        obs, *_ = env.step(FORWARD)
    assert state.tolist() == [5]  # MiniGrid's index of "key"
    known, state = planner.act(image(obs), state)
    assert steps_to_success(known) == [4 + n for n in (2, 4, 3, 3, 3, 3, 3)]

    # A planner that has not seen the instruction weighs both instructions equally:
    # if it were the ball (bottom), left would cost 4 and right 2. Averaged, every
    # action costs 3 more steps: all logits are equal.
    unseen, memory = planner.act(image(obs), state, done_mask=torch.tensor([True]))
    assert memory.tolist() == [-1]
    assert steps_to_success(unseen) == [7.0] * 7
    fresh, _ = BoltzmannPlanner([env]).act(image(obs), torch.tensor([-1]))
    torch.testing.assert_close(fresh, unseen)


def test_no_value_when_success_is_out_of_time():
    # max_steps 7 at the start: turning (8 steps) cannot succeed in time -> Q = 0;
    # forward succeeds at n = 6, a wasted step at n = 7 (the last allowed step).
    env, obs = reset(Scenario("ball", "key"), max_steps=7)
    logits, _ = BoltzmannPlanner([env]).act(image(obs), torch.tensor([-1]))
    q = (logits[0].double() * 0.9 / 7).tolist()
    expected = [0.0, 0.0, 1 - 0.9 * 6 / 7] + [1 - 0.9 * 7 / 7] * 4
    assert q == pytest.approx(expected, abs=1e-6)


def test_planner_tracks_several_envs_and_new_episodes():
    envs = [make_env(ENV_ID, one_hot=False) for _ in range(2)]
    obs = [envs[0].reset(options={"instruction": "key", "top": "key"})[0]]
    obs.append(envs[1].reset(options={"instruction": "ball", "top": "key"})[0])
    planner = BoltzmannPlanner(envs)
    batch = torch.stack([torch.as_tensor(o["image"]) for o in obs])
    _, state = planner.act(batch, planner.initial_state(2))
    assert state.tolist() == [5, 6]
    # a reset env (new grid) is a new episode even without done_mask
    new = envs[0].reset(options={"instruction": "ball", "top": "ball"})[0]
    batch[0] = torch.as_tensor(new["image"])
    _, state = planner.act(batch, state)
    assert state.tolist() == [6, 6]


def test_bad_use_raises_named_errors():
    env, obs = reset(Scenario("key", "key"))
    with pytest.raises(ConfigError, match="attach"):
        BoltzmannPlanner().act(image(obs), torch.tensor([-1]))
    with pytest.raises(EnvError, match="DoorKey"):
        BoltzmannPlanner([gymnasium.make("MiniGrid-DoorKey-5x5-v0")])
    planner = BoltzmannPlanner([env])
    with pytest.raises(ObservationError, match=r"\[1, 7, 7, 3\]"):
        planner.act(torch.zeros(1, 7, 7, 20), torch.tensor([-1]))
    with pytest.raises(ConfigError, match="state must have shape"):
        planner.act(image(obs), torch.tensor([-1, -1]))
    with pytest.raises(ConfigError, match="logit_scale"):
        BoltzmannPlanner(logit_scale=0.0)
    assert np.isfinite(planner.act(image(obs), torch.tensor([-1]))[0].numpy()).all()
    for action in (FORWARD, FORWARD, FORWARD, FORWARD, LEFT, FORWARD):
        obs, _, terminated, *_ = env.step(action)
    assert terminated
    with pytest.raises(EnvError, match=r"\(5, 2\), which ends the episode"):
        planner.act(image(obs), torch.tensor([5]))
