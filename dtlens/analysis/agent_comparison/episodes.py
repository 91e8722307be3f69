"""Episodes to compare a decision transformer with the agents it simulates, and their states.

Background:
    To ask how faithfully a DT simulates its demonstrator, both must be read on the
    *same* trajectories. :func:`play_episodes` plays an agent (by default the planner
    the shipped MemoryDT was trained on) in the four Memory layouts, greedy and
    sampled, with fixed seeds, and labels every step with a *state kind*:

    - ``"routine"``: the episode so far follows the optimal route of its layout
      exactly (the corridor, and the step after the turn towards the matching
      target), except the decision square itself;
    - ``"decision"``: the agent stands on the decision square (the end of the
      corridor) facing the wall, whatever it did before: the one state where the
      instruction seen at the start decides the turn;
    - ``"off-routine"``: everything else (any step after a deviation from the route:
      a wrong turn, a wasted action, a detour, even one that later comes back).

    :func:`~dtlens.analysis.agent_comparison.replay.agent_probabilities` then replays
    every episode for any agent (reset the
    env with the episode's seed and layout, feed the recorded observations, take the
    recorded actions), so a recurrent agent reads each step with its hidden state
    along that very episode, and returns its action distribution at every step.

Examples:
    >>> from dtlens.data.agents.planner import BoltzmannPlanner
    >>> episodes = play_episodes(BoltzmannPlanner(logit_scale=2.5), sampling=("greedy:1",))
    >>> episodes.n_episodes, episodes.demos.episode_lengths.tolist()
    (4, [6, 6, 6, 6])
    >>> [STATE_KINDS[k] for k in episodes.kinds[:6]]
    ['routine', 'routine', 'routine', 'routine', 'decision', 'routine']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from dtlens.data.agents.base import Agent, sample_actions
from dtlens.data.collect import SamplingSpec, parse_sampling_spec
from dtlens.data.demonstrations import Demonstrations
from dtlens.env import MEMORY_ENV_ID, SCENARIOS, Scenario, make_env, optimal_actions
from dtlens.env.scenarios import as_scenario
from dtlens.errors import ConfigError, EnvError
from dtlens.torch_context import torch_threads

__all__ = [
    "DEFAULT_SAMPLING",
    "STATE_KINDS",
    "ComparisonEpisodes",
    "Played",
    "drive",
    "play_episodes",
    "single_threaded",
    "state_kinds",
]

#: The state kinds, in the order of their integer codes in :attr:`ComparisonEpisodes.kinds`.
STATE_KINDS: tuple[str, str, str] = ("routine", "decision", "off-routine")
_ROUTINE, _DECISION, _OFF = range(3)

#: Episodes per layout: one greedy (the routine), four sampled at temperature 1 (small
#: deviations), four at temperature 5 (long detours: most off-routine states).
DEFAULT_SAMPLING: tuple[str, ...] = ("greedy:1", "1:4", "5:4")

Pose = tuple[int, int, int]  # (x, y, direction)


@dataclass(frozen=True, eq=False)
class ComparisonEpisodes:
    """Episodes of one agent in forced layouts, with each step's state kind.

    Attributes:
        demos: the episodes as :class:`~dtlens.data.demonstrations.Demonstrations`
            (raw observations, actions, rewards, timesteps; ``demos.rtg`` is each
            step's return-to-go in hindsight).
        layouts: each episode's layout (``Scenario.name``).
        seeds: each episode's env reset seed ``[E]``.
        sampling: how each episode's actions were drawn (``"greedy"``,
            ``"temperature=5"``, ...).
        kinds: each step's state kind ``[N]``: an index into :data:`STATE_KINDS`.
        agent: the name of the agent that played them.
        max_steps: the episode step limit.
    """

    demos: Demonstrations
    layouts: tuple[str, ...]
    seeds: Int[np.ndarray, " episode"]
    sampling: tuple[str, ...]
    kinds: Int[np.ndarray, " step"]
    agent: str
    max_steps: int

    @property
    def n_episodes(self) -> int:
        """E."""
        return self.demos.n_episodes

    @property
    def n_steps(self) -> int:
        """N, the steps of all episodes."""
        return self.demos.n_steps

    @property
    def episode_of_step(self) -> Int[np.ndarray, " step"]:
        """The episode index of every step ``[N]``."""
        return np.repeat(np.arange(self.n_episodes), self.demos.episode_lengths)

    def kind_counts(self) -> dict[str, int]:
        """Steps of each state kind.

        Examples:
            >>> episodes.kind_counts()  # doctest: +SKIP
            {'routine': 120, 'decision': 31, 'off-routine': 612}
        """
        counts = np.bincount(self.kinds, minlength=len(STATE_KINDS))
        return {kind: int(c) for kind, c in zip(STATE_KINDS, counts, strict=True)}


# ------------------------------------------------------------------ state kinds
def _pose(env) -> Pose:
    inner = env.unwrapped
    x, y = (int(v) for v in inner.agent_pos)
    return x, y, int(inner.agent_dir)


def _route(scenario: Scenario, max_steps: int) -> tuple[list[int], Pose]:
    """The optimal route's actions and the decision pose (where it turns)."""
    route = [int(a) for a in optimal_actions(scenario.instruction, scenario.top)]
    turn = next(i for i, a in enumerate(route) if a != 2)  # the first non-forward action
    env = make_env(MEMORY_ENV_ID, max_steps=max_steps, one_hot=False)
    env.reset(seed=0, options=scenario.options)
    for action in route[:turn]:
        env.step(action)
    decision = _pose(env)
    env.close()
    return route, decision


class _Labeller:
    """The state kind of each step of one episode, fed pose by pose."""

    def __init__(self, route: list[int], decision: Pose):
        self.route, self.decision = route, decision
        self.on_route = True

    def label(self, t: int, pose: Pose, previous_action: int | None) -> int:
        if previous_action is not None:
            on = t - 1 < len(self.route) and previous_action == self.route[t - 1]
            self.on_route = self.on_route and on
        if pose == self.decision:
            return _DECISION
        return _ROUTINE if self.on_route else _OFF


def state_kinds(
    scenario: Scenario | str, actions: Sequence[int], max_steps: int = 50
) -> Int[np.ndarray, " step"]:
    """The state kind (index into :data:`STATE_KINDS`) before each of ``actions``.

    Replays the actions in a fresh env of the layout; the kind of step ``t`` is read
    from the agent's pose before action ``t`` and the actions taken before it (see the
    module docstring for the three kinds).

    Args:
        scenario: the layout (a :class:`~dtlens.env.Scenario` or its name).
        actions: the episode's actions (it may end before or at its last action).
        max_steps: the env's step limit.

    Raises:
        EnvError: the episode ends before its last action.

    Examples:
        >>> kinds = state_kinds("key/top-ball", [2, 2, 2, 2, 1, 2])
        >>> [STATE_KINDS[k] for k in kinds]
        ['routine', 'routine', 'routine', 'routine', 'decision', 'routine']
        >>> [STATE_KINDS[k] for k in state_kinds("key/top-ball", [2, 0, 1, 2])]
        ['routine', 'routine', 'off-routine', 'off-routine']
    """
    scenario = as_scenario(scenario)
    labeller = _Labeller(*_route(scenario, max_steps))
    env = make_env(MEMORY_ENV_ID, max_steps=max_steps, one_hot=False)
    env.reset(seed=0, options=scenario.options)
    out = []
    previous = None
    for t, action in enumerate(actions):
        out.append(labeller.label(t, _pose(env), previous))
        _, _, terminated, truncated, _ = env.step(int(action))
        previous = int(action)
        if (terminated or truncated) and t < len(actions) - 1:
            env.close()
            raise EnvError(f"the episode ended at step {t}, before its last action")
    env.close()
    return np.asarray(out, dtype=np.int64)


# ----------------------------------------------------------------- playing
def single_threaded() -> AbstractContextManager[None]:
    """Run torch on one thread for the duration (restored after): ``torch_threads(1)``.

    Agents step in batches of a few dozen rows and the DT reads a few hundred short
    windows: a second thread only adds synchronisation, and on a busy machine, where
    it waits for a core, it makes these small ops many times slower (measured here:
    an LSTM replay 1.7 s on one thread, 30 s on two).

    Examples:
        >>> with single_threaded():
        ...     torch.get_num_threads()
        1
    """
    return torch_threads(1)


@dataclass
class Played:
    """What one lockstep :func:`drive` recorded, per episode (outer lists: episodes)."""

    obs: list[list[np.ndarray]]
    actions: list[list[int]]
    rewards: list[list[float]]
    logits: list[list[Tensor]]
    kinds: list[list[int]]
    terminated: list[bool]
    truncated: list[bool]


@single_threaded()
@torch.no_grad()
def drive(
    agent: Agent,
    layouts: Sequence[Scenario],
    seeds: Sequence[int],
    max_steps: int,
    choose: Callable[[int, int, Tensor], int],
    expected_obs: Callable[[int, int], np.ndarray | None] | None = None,
) -> Played:
    """Play every episode in lockstep (one ``agent.act`` per step for all of them).

    The engine of :func:`play_episodes` (the agent chooses) and of
    :func:`~dtlens.analysis.agent_comparison.replay.agent_logits` (the recorded actions
    are replayed, ``expected_obs`` checks the env shows what was recorded).
    ``choose(episode, t, logits)`` picks each step's action. Episodes that have ended
    are reset and keep being fed (so every row stays a valid env for the agent);
    their outputs are ignored.
    """
    n = len(layouts)
    envs = [make_env(MEMORY_ENV_ID, max_steps=max_steps, one_hot=False) for _ in range(n)]
    attach = getattr(agent, "attach", None)
    if callable(attach):
        attach(envs)
    routes = {s.name: _route(s, max_steps) for s in set(layouts)}
    labellers = [_Labeller(*routes[s.name]) for s in layouts]

    def reset(i: int) -> np.ndarray:
        return envs[i].reset(seed=int(seeds[i]), options=layouts[i].options)[0]["image"]

    obs = [reset(i) for i in range(n)]
    played = Played(*([[] for _ in range(n)] for _ in range(5)), [False] * n, [False] * n)
    live = np.ones(n, dtype=bool)
    done = torch.zeros(n, dtype=torch.bool)
    state = agent.initial_state(n)
    previous: list[int | None] = [None] * n
    try:
        for t in range(max_steps):
            if not live.any():
                break
            logits, state = agent.act(torch.from_numpy(np.stack(obs)), state, done)
            logits = logits.detach().float().cpu()
            done = torch.zeros(n, dtype=torch.bool)
            for i in np.flatnonzero(live):
                if expected_obs is not None:
                    want = expected_obs(i, t)
                    if want is None or not np.array_equal(want, obs[i]):
                        raise EnvError(
                            f"replaying episode {i} ({layouts[i].name}, seed {seeds[i]}) "
                            f"diverged at step {t}: the env shows another observation"
                        )
                action = int(choose(i, t, logits[i]))
                played.kinds[i].append(labellers[i].label(t, _pose(envs[i]), previous[i]))
                played.obs[i].append(obs[i])
                played.logits[i].append(logits[i])
                played.actions[i].append(action)
                previous[i] = action
                step = envs[i].step(action)
                obs[i] = step[0]["image"]
                played.rewards[i].append(float(step[1]))
                if step[2] or step[3]:
                    live[i] = False
                    played.terminated[i], played.truncated[i] = bool(step[2]), bool(step[3])
                    obs[i] = reset(i)  # a valid row for the agent; its output is ignored
                    done[i] = True
    finally:
        for env in envs:
            env.close()
    return played


def _check_max_steps(max_steps: int) -> None:
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ConfigError(f"max_steps must be a positive int, got {max_steps!r}")


def play_episodes(
    agent: Agent,
    layouts: Sequence[Scenario | str] = SCENARIOS,
    sampling: Sequence[str | SamplingSpec] = DEFAULT_SAMPLING,
    seed: int = 0,
    max_steps: int = 50,
    agent_name: str | None = None,
) -> ComparisonEpisodes:
    """Play ``agent`` in every layout with every sampling group; label each step's kind.

    Episode order: for each sampling group, for each of its episodes, every layout in
    turn. Episode ``i`` resets its env with seed ``seed + i`` and draws its actions
    from a torch generator seeded with ``SeedSequence([seed, i])``, so the episodes
    depend only on the arguments.

    Args:
        agent: any :class:`~dtlens.data.agents.base.Agent` (an agent with an
            ``attach(envs)`` method, like the planner, is attached to the envs).
        layouts: the layouts (default: all four).
        sampling: sampling groups, ``"greedy:N"``, ``"T:N"``, ``"topkK@T:N"``
            (:func:`~dtlens.data.collect.parse_sampling_spec`): N episodes per layout.
        seed: the root seed.
        max_steps: the episode step limit.
        agent_name: how to name the agent (default: its class name).

    Returns:
        The :class:`ComparisonEpisodes`.

    Raises:
        ConfigError: a bad sampling spec or ``max_steps``.
        EnvError: an unknown layout.

    Examples:
        >>> from dtlens.data.agents.planner import BoltzmannPlanner
        >>> eps = play_episodes(BoltzmannPlanner(), ["ball/top-key"], ["greedy:1", "5:1"])
        >>> eps.sampling, eps.layouts
        (('greedy', 'temperature=5'), ('ball/top-key', 'ball/top-key'))
    """
    _check_max_steps(max_steps)
    groups = [s if isinstance(s, SamplingSpec) else parse_sampling_spec([s])[0] for s in sampling]
    if not groups:
        raise ConfigError("no sampling group given; pass at least one, e.g. ['greedy:1']")
    scenarios = [as_scenario(layout) for layout in layouts]
    if not scenarios:
        raise ConfigError("no layout given; pass at least one, e.g. SCENARIOS")
    jobs = [(g, s) for g in groups for _ in range(g.n_episodes) for s in scenarios]
    n = len(jobs)
    seeds = np.arange(seed, seed + n, dtype=np.int64)
    generators = []
    for i in range(n):
        action_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        generators.append(torch.Generator().manual_seed(action_seed))

    def choose(i: int, t: int, logits: Tensor) -> int:
        group = jobs[i][0]
        return int(sample_actions(logits[None], group.temperature, generators[i], group.top_k)[0])

    played = drive(agent, [s for _, s in jobs], seeds.tolist(), max_steps, choose)
    lengths = np.array([len(a) for a in played.actions], dtype=np.int64)
    demos = Demonstrations(
        obs=np.stack([o for episode in played.obs for o in episode]).astype(np.uint8),
        actions=np.concatenate(played.actions).astype(np.int64),
        rewards=np.concatenate(played.rewards).astype(np.float32),
        timesteps=np.concatenate([np.arange(k) for k in lengths]).astype(np.int64),
        episode_starts=np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
        terminated=np.array(played.terminated, dtype=bool),
        truncated=np.array(played.truncated, dtype=bool),
        header={"env_id": MEMORY_ENV_ID, "max_steps": max_steps},
    )
    return ComparisonEpisodes(
        demos=demos,
        layouts=tuple(s.name for _, s in jobs),
        seeds=seeds,
        sampling=tuple(g.label for g, _ in jobs),
        kinds=np.concatenate(played.kinds).astype(np.int64),
        agent=agent_name or type(agent).__name__,
        max_steps=max_steps,
    )
