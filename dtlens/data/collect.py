"""Collect demonstrations by playing an agent in many MiniGrid envs at once.

Background:
    The MemoryDT post trained on 24k episodes of a PPO LSTM agent, a third sampled at
    temperature 1 and two thirds at temperature 5 ("1:8000", "5:16000" here).
    :func:`collect_demonstrations` plays any :class:`~dtlens.data.agents.base.Agent`
    (the PPO LSTM, the :class:`~dtlens.data.agents.planner.BoltzmannPlanner`, ...) in
    ``n_envs`` envs stepped together (one batched ``act`` call per step) and returns
    :class:`~dtlens.data.demonstrations.Demonstrations`. :func:`collect_to_file` is the
    whole of ``dtlens collect``: check the output file, load the agent
    (:func:`load_agent`), collect, write the file once, atomically.

Reproducibility:
    Episode ``g`` (counting from 0, continuing after an appended set's episodes) resets
    its env with, and samples its actions from a torch generator seeded by, seeds
    derived from ``(seed, g)`` with ``numpy.random.SeedSequence``. Episodes are stored
    in order of ``g``, each sampling group's episodes contiguous. The result therefore
    depends only on ``seed``, the spec and the agent, not on ``n_envs`` (for a
    memoryless or per-env agent, as both shipped agents are).

Examples:
    >>> from dtlens.data.agents.planner import BoltzmannPlanner
    >>> demos = collect_demonstrations(BoltzmannPlanner(), "MiniGrid-MemoryS7FixedStart-v0",
    ...                                ["greedy:4"], n_envs=2, show_progress=False)
    >>> demos.summary()["success"], demos.episode_lengths.tolist()
    (4, [6, 6, 6, 6])
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from dtlens.data.agents.base import Agent, action_probabilities, check_sampling
from dtlens.data.demonstrations import Demonstrations
from dtlens.env import make_env
from dtlens.errors import ConfigError, OutputPathError
from dtlens.files import check_writable
from dtlens.torch_context import torch_threads

__all__ = [
    "CollectResult",
    "SamplingSpec",
    "collect_demonstrations",
    "collect_to_file",
    "load_agent",
    "parse_sampling_spec",
]

_SPEC = re.compile(
    r"^(?:(?P<greedy>greedy)|topk(?P<k>\d+)(?:@(?P<kt>[^:]+))?|(?P<t>[^:]+)):(?P<n>\d+)$"
)


class SamplingSpec(NamedTuple):
    """How to sample ``n_episodes`` episodes: ``softmax(logits / temperature)`` over the
    ``top_k`` most likely actions (all when None); temperature 0 = greedy."""

    temperature: float
    n_episodes: int
    top_k: int | None = None

    @property
    def label(self) -> str:
        """A short name, e.g. ``"temperature=5"``, ``"greedy"``, ``"top3@temperature=1"``."""
        if self.temperature == 0:
            return "greedy"
        t = f"temperature={self.temperature:g}"
        return t if self.top_k is None else f"top{self.top_k}@{t}"

    def to_json(self) -> dict[str, Any]:
        """The header entry of this group."""
        return {**self._asdict(), "label": self.label}


def parse_sampling_spec(specs: Sequence[str]) -> list[SamplingSpec]:
    """Parse ``TEMPERATURE:N_EPISODES`` strings into :class:`SamplingSpec` groups.

    Forms: ``"5:16000"`` (temperature 5), ``"greedy:100"`` (= ``"0:100"``, argmax),
    ``"topk3:100"`` (the 3 most likely actions at temperature 1), ``"topk3@2:100"``
    (top 3 at temperature 2).

    Raises:
        ConfigError: For a malformed string, a negative or non-finite temperature, a
            bad k, or zero episodes (the message quotes the string).

    Examples:
        >>> [(s.temperature, s.n_episodes) for s in parse_sampling_spec(["1:8000", "5:16000"])]
        [(1.0, 8000), (5.0, 16000)]
        >>> [s.label for s in parse_sampling_spec(["greedy:10", "topk3@0.5:20"])]
        ['greedy', 'top3@temperature=0.5']
    """
    if isinstance(specs, str):
        specs = [specs]
    out = []
    for text in specs:
        match = _SPEC.match(str(text).strip())
        if match is None:
            raise ConfigError(
                f"bad sampling spec {text!r}; expected TEMPERATURE:N_EPISODES such as '1:8000', "
                "'greedy:100', 'topk3:100' or 'topk3@2:100'"
            )
        raw_t = "0" if match["greedy"] else match["kt"] or ("1" if match["k"] else match["t"])
        try:
            temperature = float(raw_t)
        except ValueError:
            raise ConfigError(f"bad temperature {raw_t!r} in sampling spec {text!r}") from None
        top_k = int(match["k"]) if match["k"] else None
        try:
            check_sampling(temperature, top_k)
        except ConfigError as err:
            raise ConfigError(f"sampling spec {text!r}: {err}") from err
        n = int(match["n"])
        if n < 1:
            raise ConfigError(f"sampling spec {text!r} asks for {n} episodes; need at least 1")
        out.append(SamplingSpec(temperature, n, top_k))
    if not out:
        raise ConfigError("no sampling spec given; pass at least one, e.g. ['1:8000']")
    return out


def _sample(
    logits: Float[Tensor, "n_envs n_actions"],
    groups: Sequence[SamplingSpec],
    generators: Sequence[torch.Generator],
) -> list[int]:
    """One action per row, row ``i`` from ``groups[i]``'s distribution with its own
    generator: ``action_probabilities`` (the distribution ``sample_actions`` draws from)
    inverted at one uniform draw per row, batched over rows that share a group."""
    uniform = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in generators])
    actions = torch.empty(len(groups), dtype=torch.long)
    for group in set(groups):
        rows = torch.tensor([i for i, g in enumerate(groups) if g == group])
        if group.temperature == 0:
            actions[rows] = logits[rows].argmax(-1)
            continue
        probs = action_probabilities(logits[rows].double(), group.temperature, group.top_k)
        cdf = probs.cumsum(-1)
        picked = torch.searchsorted(cdf, uniform[rows, None] * cdf[:, -1:], right=True)
        picked = picked.squeeze(-1)
        actions[rows] = picked.clamp_max(probs.shape[-1] - 1)
    return actions.tolist()


def _episode_seeds(seed: int, g: int) -> tuple[int, int]:
    env_seed, action_seed = np.random.SeedSequence([seed, g]).generate_state(2)
    return int(env_seed), int(action_seed)


class _Recorder:
    """Steps of the episodes in progress, and the finished ones by episode number."""

    def __init__(self) -> None:
        self.finished: dict[int, tuple] = {}

    def finish(self, g: int, steps: list, terminated: bool, truncated: bool) -> None:
        obs, actions, rewards = zip(*steps, strict=True)
        self.finished[g] = (np.stack(obs), actions, rewards, terminated, truncated)

    def demonstrations(self, header: dict) -> Demonstrations:
        episodes = [self.finished[g] for g in sorted(self.finished)]
        lengths = np.array([len(e[1]) for e in episodes], dtype=np.int64)
        return Demonstrations(
            obs=np.concatenate([e[0] for e in episodes]).astype(np.uint8),
            actions=np.concatenate([e[1] for e in episodes]).astype(np.int64),
            rewards=np.concatenate([e[2] for e in episodes]).astype(np.float32),
            timesteps=np.concatenate([np.arange(n) for n in lengths]).astype(np.int64),
            episode_starts=np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
            terminated=np.array([e[3] for e in episodes], dtype=bool),
            truncated=np.array([e[4] for e in episodes], dtype=bool),
            header=header,
        )


@torch.no_grad()
def collect_demonstrations(
    agent: Agent,
    env_id: str,
    spec: Sequence[str] | Sequence[SamplingSpec],
    n_envs: int = 16,
    max_steps: int = 50,
    seed: int = 0,
    show_progress: bool = True,
    append: Demonstrations | str | os.PathLike | None = None,
    agent_name: str | None = None,
) -> Demonstrations:
    """Play ``agent`` for every sampling group of ``spec`` and record the episodes.

    Args:
        agent: Any :class:`~dtlens.data.agents.base.Agent`. An agent that reads the
            true map (the planner) has an ``attach(envs)`` method; it is called with
            the envs it will play.
        env_id: A MiniGrid id, e.g. ``"MiniGrid-MemoryS7FixedStart-v0"``.
        spec: Sampling groups, as strings (see :func:`parse_sampling_spec`) or
            :class:`SamplingSpec`; collected in order, each group's episodes contiguous.
        n_envs: Envs stepped together (one ``act`` call per step for all of them).
        max_steps: Episode length limit (truncation).
        seed: Root seed of every episode's env and action seeds (see the module
            docstring).
        show_progress: Show a tqdm bar over episodes.
        append: Existing demonstrations (or a path to a file of them) to extend: the
            result is ``append`` followed by the new episodes, whose numbering (and so
            seeds) continues after ``append``'s episodes.
        agent_name: How the header names the agent (default: its class name).

    Torch runs single-threaded during collection (restored afterwards): every step is
    a tiny batch, for which a thread pool only adds synchronisation (on a busy machine,
    milliseconds per op).

    Returns:
        The demonstrations (new episodes after ``append``'s, headers merged).

    Raises:
        ConfigError: For a bad spec, ``n_envs`` or ``max_steps``.
        EnvError: For an unknown env id.

    Examples:
        >>> from dtlens.data.agents import load_original_lstm
        >>> agent = load_original_lstm("dti_memory_ppo_lstm.pt")  # doctest: +SKIP
        >>> demos = collect_demonstrations(agent, "MiniGrid-MemoryS7FixedStart-v0",
        ...                                ["1:8000", "5:16000"])  # doctest: +SKIP
        >>> demos.save("demos.npz")  # doctest: +SKIP
    """
    groups = [s if isinstance(s, SamplingSpec) else parse_sampling_spec([s])[0] for s in spec]
    if not groups:
        raise ConfigError("no sampling spec given; pass at least one, e.g. ['1:8000']")
    for name, value in (("n_envs", n_envs), ("max_steps", max_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive int, got {value!r}")
    if append is not None and not isinstance(append, Demonstrations):
        append = Demonstrations.load(Path(append))
    offset = append.n_episodes if append is not None else 0
    jobs = [group for group in groups for _ in range(group.n_episodes)]  # job j -> group

    envs = [make_env(env_id, max_steps=max_steps, one_hot=False) for _ in range(n_envs)]
    attach = getattr(agent, "attach", None)
    if callable(attach):
        attach(envs)
    recorder = _Recorder()
    slot_job: list[int | None] = [None] * n_envs  # job played by each env (None: idle)
    slot_steps: list[list] = [[] for _ in range(n_envs)]
    slot_gen: list[torch.Generator] = [torch.Generator() for _ in range(n_envs)]
    obs = [None] * n_envs
    next_job = 0

    def start(i: int) -> None:
        nonlocal next_job
        job = next_job if next_job < len(jobs) else None
        next_job += job is not None
        env_seed, action_seed = _episode_seeds(seed, offset + (job if job is not None else 0))
        slot_job[i], slot_steps[i] = job, []
        slot_gen[i].manual_seed(action_seed)
        obs[i] = envs[i].reset(seed=env_seed)[0]["image"]

    for i in range(n_envs):
        start(i)
    state = agent.initial_state(n_envs)
    done = torch.zeros(n_envs, dtype=torch.bool)
    bar = tqdm(total=len(jobs), disable=not show_progress, unit="episode")
    with bar, torch_threads(1):
        while any(job is not None for job in slot_job):
            logits, state = agent.act(torch.from_numpy(np.stack(obs)), state, done)
            done = torch.zeros(n_envs, dtype=torch.bool)
            active = [jobs[job] if job is not None else groups[0] for job in slot_job]
            actions = _sample(logits.detach().cpu(), active, slot_gen)
            for i, env in enumerate(envs):
                job, action = slot_job[i], actions[i]
                image = obs[i]
                step = env.step(action)
                obs[i], reward, terminated, truncated = step[0]["image"], *step[1:4]
                slot_steps[i].append((image, action, reward))
                if terminated or truncated:
                    if job is not None:
                        recorder.finish(offset + job, slot_steps[i], terminated, truncated)
                        bar.update(1)
                    start(i)
                    done[i] = True
    for env in envs:
        env.close()

    header = {
        "env_id": env_id,
        "max_steps": max_steps,
        "parts": [
            {
                "agent": agent_name or type(agent).__name__,
                "sampling": [g.to_json() for g in groups],
                "seed": seed,
                "first_episode": offset,
                "n_envs": n_envs,
                "dtlens_version": _version(),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
        ],
    }
    new = recorder.demonstrations(header)
    return new if append is None else append.append(new)


def _version() -> str:
    try:
        return importlib.metadata.version("dtlens")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source checkout
        return "unknown"


def load_agent(spec: str, planner_scale: float | None = None) -> tuple[Agent, str]:
    """The agent ``spec`` names (``dtlens collect --agent``) and how a header names it.

    ``"planner"``: the :class:`~dtlens.data.agents.planner.BoltzmannPlanner` (its logits
    multiplied by ``planner_scale``, default 1); a directory: a dtlens LSTM agent; a file:
    an original-project PPO LSTM ``.pt``.

    Raises:
        ConfigError: If ``spec`` is neither ``"planner"`` nor an existing path, or a
            planner scale is given for another agent.
        CheckpointError: If the path is not a loadable agent.

    Examples:
        >>> type(load_agent("planner")[0]).__name__
        'BoltzmannPlanner'
    """
    from dtlens.data.agents.lstm import load_lstm_agent
    from dtlens.data.agents.original_lstm import load_original_lstm
    from dtlens.data.agents.planner import BoltzmannPlanner

    if spec == "planner":
        scale = 1.0 if planner_scale is None else planner_scale
        return BoltzmannPlanner(logit_scale=scale), f"planner(logit_scale={scale:g})"
    if planner_scale is not None:
        raise ConfigError(f"--planner-scale only applies to --agent planner, not {spec!r}")
    path = Path(spec)
    if path.is_dir():
        return load_lstm_agent(path), f"lstm:{path.name}"
    if path.is_file():
        return load_original_lstm(path), f"original_lstm:{path.name}"
    raise ConfigError(
        f"--agent must be 'planner', an original PPO LSTM .pt file or a dtlens LSTM agent "
        f"directory; {spec!r} is none of these (no such file or directory)"
    )


class CollectResult(NamedTuple):
    """What :func:`collect_to_file` wrote: the whole file's demonstrations, how many
    episodes this call collected, and in how many seconds."""

    demos: Demonstrations
    n_collected: int
    seconds: float


def collect_to_file(
    agent: str,
    out: str | os.PathLike,
    spec: Sequence[str],
    *,
    env_id: str = "MiniGrid-MemoryS7FixedStart-v0",
    max_steps: int = 50,
    n_envs: int = 16,
    seed: int = 0,
    append: bool = False,
    overwrite: bool = False,
    planner_scale: float | None = None,
    show_progress: bool = True,
) -> CollectResult:
    """Collect demonstrations into ``out`` (``dtlens collect``).

    ``out`` is checked before any episode is played: writable, not a directory, and not
    an existing file unless ``append`` (extend it; it must exist) or ``overwrite``. The
    file is written once, atomically, when collection is done.

    Args:
        agent: ``"planner"``, an original PPO LSTM ``.pt`` or a dtlens LSTM agent
            directory (:func:`load_agent`).
        out: the ``.npz`` file to write.
        spec: sampling groups (:func:`parse_sampling_spec`).
        env_id: a MiniGrid id (:func:`collect_demonstrations`' ``env_id``).
        max_steps: episode length limit.
        n_envs: envs stepped together.
        seed: root seed of every episode's env and action seeds.
        append: extend the existing ``out``.
        overwrite: replace an existing ``out``.
        planner_scale: the planner's logit scale (planner only).
        show_progress: a tqdm bar over episodes.

    Raises:
        OutputPathError: ``out`` cannot be written, or exists and neither ``append``
            nor ``overwrite`` is given.
        ConfigError: ``append`` without an existing file, a bad spec or agent.
    """
    out = Path(out)
    check_writable(out, "file", "--out")
    if append and not out.is_file():
        raise ConfigError(f"--append needs an existing file, but {out} does not exist")
    if out.exists() and not (append or overwrite):
        raise OutputPathError(
            f"{out} exists; pass --append to extend it or --overwrite to replace it"
        )
    groups = parse_sampling_spec(spec)
    player, name = load_agent(agent, planner_scale)
    start = time.perf_counter()
    demos = collect_demonstrations(
        player,
        env_id,
        groups,
        n_envs=n_envs,
        max_steps=max_steps,
        seed=seed,
        show_progress=show_progress,
        append=out if append else None,
        agent_name=name,
    )
    seconds = time.perf_counter() - start
    demos.save(out)
    return CollectResult(demos, sum(group.n_episodes for group in groups), seconds)
