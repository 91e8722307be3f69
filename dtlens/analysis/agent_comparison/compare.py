"""How faithfully a decision transformer simulates its demonstrators: KL and argmax agreement.

Background:
    A decision transformer is trained to reproduce the action distribution of the
    agents in its data, conditioned on the return-to-go. :func:`compare_agents` reads
    the DT and each agent on the same episodes (:func:`~.episodes.play_episodes`): at
    every step, the agent's distribution (the planner's Boltzmann distribution, a
    recurrent agent's policy given its hidden state along the episode) and the DT's on
    the window of the episode's own history ending at that step, with every RTG token
    set to a chosen value (or to the episode's own return-to-go, as in training). Per
    state kind (routine, decision square, off-routine; see
    :data:`~.episodes.STATE_KINDS`) and overall it reports

    - ``KL(agent || DT) = sum_a p_agent(a) (log p_agent(a) - log p_DT(a))`` in nats,
      the extra code length of coding the agent's actions with the DT's distribution
      (0 when they agree exactly; actions the agent never takes add no term, but the
      DT's mass on them lowers its mass elsewhere and so counts);
    - argmax agreement: the DT's most likely action is one of the agent's most likely
      ones (agent ties within ``1e-6`` all count);

    each with a 95 % interval from a bootstrap over episodes (steps of one episode are
    not independent, so whole episodes are resampled).

Which RTG the demonstrator corresponds to: an optimal episode of Memory returns
``1 - 0.9 * 6 / 50 = 0.892``, so RTG 0.9 asks for the demonstrator at its best (the
temperature-1 planner succeeds in every episode, mean return 0.85); RTG 0 asks for an
episode that fails, which in the shipped model's data are truncated temperature-5
episodes. ``rtgs=("return",)`` gives each step its episode's own return-to-go.

Examples:
    >>> from dtlens.analysis.agent_comparison import play_episodes
    >>> from dtlens.data.agents.planner import BoltzmannPlanner
    >>> planner = BoltzmannPlanner(logit_scale=2.5)
    >>> episodes = play_episodes(planner, ["key/top-ball"], ["greedy:1", "5:1"])
    >>> result = compare_agents(model, episodes, [ComparedAgent("planner", planner)],
    ...                         rtgs=(0.9,), n_boot=100)
    >>> result.kl.shape, result.kinds
    ((1, 1, 4), ('routine', 'decision', 'off-routine', 'all'))
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from dtlens.analysis.agent_comparison.episodes import ComparisonEpisodes, single_threaded
from dtlens.analysis.agent_comparison.measures import (
    KINDS,
    argmax_agreement,
    kl_divergence,
    summarise_steps,
)
from dtlens.analysis.agent_comparison.replay import agent_logits, probabilities_from_logits
from dtlens.data.agents.base import Agent
from dtlens.env.encoding import model_observations
from dtlens.errors import ConfigError
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.hooked_dt import HookedDecisionTransformer

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "RETURN_RTG",
    "AgentComparison",
    "ComparedAgent",
    "compare_agents",
    "demonstrator_agents",
    "dt_probabilities",
    "planner_scale",
    "rtg_label",
]

#: The RTG option that gives each step its episode's own return-to-go (as in training).
RETURN_RTG = "return"


# ------------------------------------------------------------ the DT's side
def rtg_label(rtg: float | str) -> str:
    """How a figure and ``numbers`` name an RTG: ``"RTG 0.9"``, ``"RTG = return"``.

    Examples:
        >>> rtg_label(0.9), rtg_label(0), rtg_label("return")
        ('RTG 0.9', 'RTG 0', 'RTG = return')
    """
    return "RTG = return" if rtg == RETURN_RTG else f"RTG {float(rtg):g}"


def _check_rtg(rtg: Any) -> float | str:
    if rtg == RETURN_RTG:
        return RETURN_RTG
    if isinstance(rtg, bool) or not isinstance(rtg, int | float) or not math.isfinite(rtg):
        raise ConfigError(f"an RTG must be a finite number or {RETURN_RTG!r}, got {rtg!r}")
    return float(rtg)


@single_threaded()
@torch.no_grad()
def dt_probabilities(
    model: HookedDecisionTransformer,
    episodes: ComparisonEpisodes,
    rtg: float | str = 0.9,
    max_batch: int = 1024,
) -> Float[Tensor, "step action"]:
    """The DT's action distribution at every step of ``episodes``.

    The window of step ``t`` is the episode's own history: the last
    ``min(t + 1, n_timesteps)`` observations, the actions between them, timesteps,
    and every RTG token set to ``rtg`` (``"return"``: the episode's return-to-go at
    each step). Short windows are padded the way the model expects
    (:meth:`~dtlens.model.hooked_dt.HookedDecisionTransformer.pad_context`). The
    prediction is read at the window's last state token. Runs torch on one thread
    (:func:`~.episodes.single_threaded`).

    Args:
        model: the decision transformer (or clone: RTGs are then ignored).
        episodes: from :func:`~.episodes.play_episodes`.
        rtg: a number, or ``"return"``.
        max_batch: most windows per forward.

    Returns:
        ``[N, n_actions]`` float32 probabilities, in step order of ``episodes``.

    Raises:
        ConfigError: a bad RTG, or a model that does not read MiniGrid views.

    Examples:
        >>> from dtlens.analysis.agent_comparison import play_episodes
        >>> from dtlens.data.agents.planner import BoltzmannPlanner
        >>> episodes = play_episodes(BoltzmannPlanner(), ["key/top-key"], ["greedy:1"])
        >>> dt_probabilities(model, episodes, rtg=0.9).shape
        torch.Size([6, 7])
    """
    rtg = _check_rtg(rtg)
    cfg = model.cfg
    if tuple(cfg.obs_shape[:2]) != (7, 7) or cfg.obs_shape[-1] not in (3, 20):
        raise ConfigError(
            f"the model reads obs_shape={list(cfg.obs_shape)}; comparing it with MiniGrid "
            "agents needs one-hot [7, 7, 20] or raw [7, 7, 3] views"
        )
    demos = episodes.demos
    window = cfg.n_timesteps
    rtg_of_step = (
        demos.rtg.astype(np.float32)
        if rtg == RETURN_RTG
        else np.full(demos.n_steps, rtg, dtype=np.float32)
    )
    lengths = np.minimum(demos.timesteps + 1, window)
    out = torch.empty(demos.n_steps, cfg.n_actions)
    was_training = model.training
    model.eval()
    try:
        for length in np.unique(lengths):
            ends = np.flatnonzero(lengths == length)
            index = ends[:, None] + np.arange(1 - length, 1)[None, :]  # [n, length] steps
            raw = torch.from_numpy(demos.obs[index])
            obs = model_observations(raw, cfg.one_hot_obs)
            batch = TrajectoryBatch(
                obs=obs,
                actions=torch.from_numpy(demos.actions[index[:, :-1]]),
                rtg=torch.from_numpy(rtg_of_step[index]),
                timesteps=torch.from_numpy(demos.timesteps[index]),
            )
            batch = model.pad_context(batch)
            for lo in range(0, len(ends), max_batch):
                part = batch[lo : lo + max_batch].to(model.device)
                logits = model.action_logits(part)[:, -1].float().cpu()
                out[torch.from_numpy(ends[lo : lo + max_batch])] = logits.softmax(-1)
    finally:
        model.train(was_training)
    return out


# ----------------------------------------------------------------- the agents
@dataclass(frozen=True)
class ComparedAgent:
    """An agent to compare with the DT, and the temperature of its distribution.

    Attributes:
        name: its label in figures and numbers (e.g. ``"planner T=1"``).
        agent: any :class:`~dtlens.data.agents.base.Agent`.
        temperature: its distribution is ``softmax(logits / temperature)``.
    """

    name: str
    agent: Agent
    temperature: float = 1.0


_PLANNER_SCALE = re.compile(r"planner\(logit_scale=([0-9.eE+-]+)\)")


def planner_scale(model: HookedDecisionTransformer | None) -> float:
    """The planner logit scale of a dtlens-built model's training data (from its
    metadata), else the shipped recipe's (2.5).

    Examples:
        >>> planner_scale(None)
        2.5
    """
    from dtlens.training.recipe import MEMORYDT_RECIPE

    header = ((model.metadata if model is not None else {}).get("data") or {}).get("header")
    for part in (header or {}).get("parts", []):
        match = _PLANNER_SCALE.fullmatch(str(part.get("agent", "")))
        if match:
            return float(match.group(1))
    return float(MEMORYDT_RECIPE.planner_scale)


def demonstrator_agents(
    model: HookedDecisionTransformer | None = None,
    temperatures: Sequence[float] = (1.0, 5.0),
    lstm_path: str | Path | None = None,
) -> list[ComparedAgent]:
    """The demonstrators to compare a Memory DT with.

    The :class:`~dtlens.data.agents.planner.BoltzmannPlanner` at the logit scale of the
    model's training data (:func:`planner_scale`), once per sampling temperature of
    that data (the shipped model's: 1 and 5), named ``"planner T=1"``, ...; and, when
    ``lstm_path`` names an existing file, the original project's PPO LSTM agent at
    temperature 1 (``"PPO LSTM"``), its own policy.

    Examples:
        >>> [a.name for a in demonstrator_agents()]
        ['planner T=1', 'planner T=5']
    """
    from dtlens.data.agents.original_lstm import load_original_lstm
    from dtlens.data.agents.planner import BoltzmannPlanner

    scale = planner_scale(model)
    agents = [
        ComparedAgent(f"planner T={t:g}", BoltzmannPlanner(logit_scale=scale), float(t))
        for t in temperatures
    ]
    if lstm_path is not None and Path(lstm_path).is_file():
        agents.append(ComparedAgent("PPO LSTM", load_original_lstm(lstm_path), 1.0))
    return agents


# --------------------------------------------------------------------- result
@dataclass(frozen=True, eq=False)
class AgentComparison:
    """KL(agent || DT) and argmax agreement per agent, RTG and state kind.

    Attributes:
        agents: agent names ``[A]``.
        rtgs: the RTGs ``[R]`` (numbers, or ``"return"``).
        kinds: the state kinds and ``"all"`` ``[K]`` (:data:`~.measures.KINDS`).
        kl: mean KL over the steps of each kind, nats ``[A, R, K]`` (NaN: no steps).
        kl_ci: its 95 % bootstrap interval over episodes ``[A, R, K, 2]``.
        agreement: fraction of steps whose argmaxes agree ``[A, R, K]``.
        agreement_ci: its 95 % interval ``[A, R, K, 2]``.
        n_steps: steps of each kind ``[K]``.
        n_episodes: episodes with at least one step of each kind ``[K]``.
        step_kl: KL at every step ``[A, R, N]``.
        step_agreement: agreement at every step ``[A, R, N]`` (bool).
        agent_probs: each agent's distribution ``[A, N, n_actions]``.
        dt_probs: the DT's distribution at each RTG ``[R, N, n_actions]``.
        episodes: the episodes compared on.
        n_boot: bootstrap resamples behind the intervals.
        seed: the bootstrap's seed.
    """

    agents: tuple[str, ...]
    rtgs: tuple[float | str, ...]
    kinds: tuple[str, ...]
    kl: np.ndarray
    kl_ci: np.ndarray
    agreement: np.ndarray
    agreement_ci: np.ndarray
    n_steps: np.ndarray
    n_episodes: np.ndarray
    step_kl: np.ndarray
    step_agreement: np.ndarray
    agent_probs: Tensor
    dt_probs: Tensor
    episodes: ComparisonEpisodes
    n_boot: int = 1000
    seed: int = 0

    @property
    def rtg_labels(self) -> tuple[str, ...]:
        """``rtg_label`` of each RTG."""
        return tuple(rtg_label(r) for r in self.rtgs)

    def summary(self, where: np.ndarray | None = None, digits: int = 4) -> dict[str, Any]:
        """JSON-ready numbers, optionally over a subset of the steps.

        ``{"kl": {agent: {rtg label: {kind: value}}}, "kl_ci": ..., "agreement": ...,
        "agreement_ci": ..., "n_steps": {kind: n}, "n_episodes": {kind: n}}``; a kind
        without steps has ``None``.

        Args:
            where: ``[N]`` bool, the steps to summarise (default: all, the attributes'
                numbers), e.g. ``result.episodes.demos.timesteps < 9``: the steps whose
                window still holds the first observation (the instruction).
            digits: rounding.

        Examples:
            >>> result.summary()["agreement"]["planner T=1"]["RTG 0.9"]["routine"]  # doctest: +SKIP
            1.0
        """
        if where is None:
            kl, kl_ci, agree, agree_ci = self.kl, self.kl_ci, self.agreement, self.agreement_ci
            n_steps, n_episodes = self.n_steps, self.n_episodes
        else:
            kinds, episode = self.episodes.kinds, self.episodes.episode_of_step
            kl, kl_ci, n_steps, n_episodes = summarise_steps(
                self.step_kl, kinds, episode, self.n_boot, self.seed, where
            )
            agree, agree_ci, _, _ = summarise_steps(
                self.step_agreement, kinds, episode, self.n_boot, self.seed, where
            )

        def value(x: np.ndarray) -> Any:
            if x.ndim:
                return [value(v) for v in x]
            return None if not np.isfinite(x) else round(float(x), digits)

        def nest(values: np.ndarray) -> dict[str, Any]:
            return {
                agent: {
                    label: {kind: value(values[a, r, k]) for k, kind in enumerate(self.kinds)}
                    for r, label in enumerate(self.rtg_labels)
                }
                for a, agent in enumerate(self.agents)
            }

        return {
            "kl": nest(kl),
            "kl_ci": nest(kl_ci),
            "agreement": nest(agree),
            "agreement_ci": nest(agree_ci),
            "n_steps": {k: int(n) for k, n in zip(self.kinds, n_steps, strict=True)},
            "n_episodes": {k: int(n) for k, n in zip(self.kinds, n_episodes, strict=True)},
        }

    def plot(self, title: str | None = None) -> go.Figure:
        """Bars per state kind, KL and agreement side by side, one bar per agent and RTG
        (:func:`dtlens.plotting.agent_comparison.plot_agent_comparison`)."""
        from dtlens.plotting.agent_comparison import plot_agent_comparison

        return plot_agent_comparison(
            self.kl,
            self.agreement,
            agents=self.agents,
            rtgs=self.rtg_labels,
            kinds=self.kinds,
            kl_ci=self.kl_ci,
            agreement_ci=self.agreement_ci,
            title=title,
        )


def compare_agents(
    model: HookedDecisionTransformer,
    episodes: ComparisonEpisodes,
    agents: Sequence[ComparedAgent],
    rtgs: Sequence[float | str] = (0.9, 0.0),
    n_boot: int = 1000,
    seed: int = 0,
) -> AgentComparison:
    """KL(agent || DT) and argmax agreement of every agent at every RTG, per state kind.

    Agents that share one agent object (the planner at two temperatures) are replayed
    once.

    Args:
        model: the decision transformer.
        episodes: the trajectories (:func:`~.episodes.play_episodes`).
        agents: the agents (:class:`ComparedAgent`; see :func:`demonstrator_agents`).
        rtgs: RTG values for the DT (``"return"``: each episode's return-to-go).
        n_boot: bootstrap resamples of the episodes for the intervals (0: none, NaN).
        seed: the bootstrap's seed.

    Returns:
        An :class:`AgentComparison`.

    Raises:
        ConfigError: no agents or RTGs, duplicate agent names, a bad RTG, temperature
            or ``n_boot``.

    Examples:
        >>> from dtlens.analysis.agent_comparison import play_episodes
        >>> from dtlens.data.agents.planner import BoltzmannPlanner
        >>> planner = BoltzmannPlanner(logit_scale=2.5)
        >>> eps = play_episodes(planner, ["ball/top-ball"], ["greedy:1"])
        >>> res = compare_agents(model, eps, [ComparedAgent("planner", planner)], rtgs=(0.9,))
        >>> res.n_steps.tolist()  # routine, decision, off-routine, all
        [5, 1, 0, 6]
    """
    if not agents:
        raise ConfigError("no agents to compare with; pass e.g. demonstrator_agents(model)")
    names = [a.name for a in agents]
    if len(set(names)) != len(names):
        raise ConfigError(f"agent names must be unique, got {names}")
    rtg_values = tuple(_check_rtg(r) for r in rtgs)
    if not rtg_values:
        raise ConfigError("no RTGs given; pass e.g. (0.9, 0.0)")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 0:
        raise ConfigError(f"n_boot must be an int >= 0, got {n_boot!r}")
    n_actions = model.cfg.n_actions
    replayed: dict[int, Tensor] = {}
    probs = []
    for spec in agents:
        if id(spec.agent) not in replayed:
            replayed[id(spec.agent)] = agent_logits(spec.agent, episodes, n_actions)
        probs.append(
            probabilities_from_logits(replayed[id(spec.agent)], spec.temperature, n_actions)
        )
    agent_probs = torch.stack(probs)
    dt_probs = torch.stack([dt_probabilities(model, episodes, r) for r in rtg_values])
    size = (len(agents), len(rtg_values), *dt_probs.shape[1:])  # [A, R, N, n_actions]
    p, q = agent_probs[:, None].expand(size), dt_probs[None].expand(size)
    step_kl, step_agree = kl_divergence(p, q).numpy(), argmax_agreement(p, q).numpy()
    kinds, episode = episodes.kinds, episodes.episode_of_step
    kl, kl_ci, n_steps, n_episodes = summarise_steps(step_kl, kinds, episode, n_boot, seed)
    agreement, agreement_ci, _, _ = summarise_steps(step_agree, kinds, episode, n_boot, seed)
    return AgentComparison(
        agents=tuple(names),
        rtgs=rtg_values,
        kinds=KINDS,
        kl=kl,
        kl_ci=kl_ci,
        agreement=agreement,
        agreement_ci=agreement_ci,
        n_steps=n_steps,
        n_episodes=n_episodes,
        step_kl=step_kl,
        step_agreement=step_agree,
        agent_probs=agent_probs,
        dt_probs=dt_probs,
        episodes=episodes,
        n_boot=n_boot,
        seed=seed,
    )
