"""The DT and the agents it simulates: their action preferences on the same episodes.

- :mod:`~dtlens.analysis.agent_comparison.episodes`: play an agent in the four Memory
  layouts (greedy and sampled, fixed seeds), label every step routine / decision /
  off-routine;
- :mod:`~dtlens.analysis.agent_comparison.replay`: replay the episodes for any agent's
  logits and action distribution at every step;
- :mod:`~dtlens.analysis.agent_comparison.compare`: the DT's distribution on each
  step's window at chosen RTGs, and KL(agent || DT) and argmax agreement per state
  kind, with bootstrap intervals over episodes (:class:`AgentComparison`, ``.plot()``).

Example:
    >>> from dtlens.analysis.agent_comparison import compare_agents, demonstrator_agents
    >>> from dtlens.analysis.agent_comparison import play_episodes
    >>> agents = demonstrator_agents(model)
    >>> episodes = play_episodes(agents[0].agent, ["key/top-key"], ["greedy:1", "5:1"])
    >>> result = compare_agents(model, episodes, agents, rtgs=(0.9, 0.0), n_boot=100)
    >>> result.agreement.shape  # agents x RTGs x (routine, decision, off-routine, all)
    (2, 2, 4)
"""

from dtlens.analysis.agent_comparison.compare import (
    RETURN_RTG,
    AgentComparison,
    ComparedAgent,
    compare_agents,
    demonstrator_agents,
    dt_probabilities,
    planner_scale,
    rtg_label,
)
from dtlens.analysis.agent_comparison.episodes import (
    DEFAULT_SAMPLING,
    STATE_KINDS,
    ComparisonEpisodes,
    play_episodes,
    state_kinds,
)
from dtlens.analysis.agent_comparison.measures import (
    KINDS,
    argmax_agreement,
    kl_divergence,
    summarise_steps,
)
from dtlens.analysis.agent_comparison.replay import (
    agent_logits,
    agent_probabilities,
    probabilities_from_logits,
)

__all__ = [
    "DEFAULT_SAMPLING",
    "KINDS",
    "RETURN_RTG",
    "STATE_KINDS",
    "AgentComparison",
    "ComparedAgent",
    "ComparisonEpisodes",
    "agent_logits",
    "agent_probabilities",
    "argmax_agreement",
    "compare_agents",
    "demonstrator_agents",
    "dt_probabilities",
    "kl_divergence",
    "planner_scale",
    "play_episodes",
    "probabilities_from_logits",
    "rtg_label",
    "state_kinds",
    "summarise_steps",
]
