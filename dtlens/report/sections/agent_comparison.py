"""Finding: how faithfully the DT simulates the agents it was trained to imitate.

The seed: MemoryDT "simulate[s] two variations of the same agent, one sampled with
slightly higher temperature than training (1) and one with much higher temperature
(5)", and the post's future work asks for a "direct comparison between the action
preferences of the original LSTM agent and the decision transformer".

Here: the planner (the shipped model's demonstrator) plays 36 episodes in the four
layouts (one greedy, four at temperature 1 and four at temperature 5 per layout, fixed
seeds); on those very episodes, at every step, KL(agent || DT) and argmax agreement
between the DT (at the high RTG, the low RTG and each episode's own return-to-go) and
the planner at temperatures 1 and 5 and, when ../shared has it, the original PPO LSTM
agent, per state kind (routine, decision square, off-routine) with 95 % intervals from
a bootstrap over episodes (:mod:`dtlens.analysis.agent_comparison`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dtlens.analysis.agent_comparison import (
    DEFAULT_SAMPLING,
    RETURN_RTG,
    AgentComparison,
    compare_agents,
    demonstrator_agents,
    play_episodes,
    rtg_label,
)
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.report.config import ReportConfig
from dtlens.report.section import Section

__all__ = ["LSTM_ENV_VAR", "original_lstm_path", "run"]

SEED_SAW = (
    "MemoryDT simulates two variations of the same agent, sampled at temperature 1 and at "
    "temperature 5; the RTG token leaks which one. The post asks how accurately the DT "
    "simulates the original LSTM agent, comparing their action preferences directly."
)

#: Environment variable naming the original PPO LSTM checkpoint (default: ../shared).
LSTM_ENV_VAR = "DTLENS_ORIGINAL_LSTM"
_LSTM_FILE = Path("checkpoints") / "dti_memory_ppo_lstm.pt"


def original_lstm_path() -> Path | None:
    """The original project's PPO LSTM checkpoint, if present: ``$DTLENS_ORIGINAL_LSTM``,
    else ``shared/checkpoints/dti_memory_ppo_lstm.pt`` beside the repository (or beside
    the working directory); None when there is none."""
    candidates = [os.environ.get(LSTM_ENV_VAR)]
    repository = Path(__file__).resolve().parents[3]
    candidates += [repository.parent / "shared" / _LSTM_FILE, Path("..") / "shared" / _LSTM_FILE]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _in_context(result: AgentComparison, window: int, digits: int = 4) -> dict:
    """KL and agreement at the decision square while the window still shows the
    instruction (the episode's first observation)."""
    summary = result.summary(where=result.episodes.demos.timesteps < window, digits=digits)
    return {
        "kl": {a: {r: v["decision"] for r, v in by.items()} for a, by in summary["kl"].items()},
        "agreement": {
            a: {r: v["decision"] for r, v in by.items()} for a, by in summary["agreement"].items()
        },
        "n_steps": summary["n_steps"]["decision"],
    }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _nats(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _this_model(numbers: dict, high: str, low: str) -> str:
    agree, kl = numbers["agreement"], numbers["kl"]
    first = numbers["agents"][0]
    hot = numbers["agents"][1] if len(numbers["agents"]) > 1 else first
    at_high = agree[first][high]
    text = (
        f"At {high} the DT's most likely action is the planner's on "
        f"{_pct(at_high['routine'])} of routine steps, {_pct(at_high['decision'])} at the "
        f"decision square ({_pct(numbers['decision_in_context']['agreement'][first][high])} "
        f"while the instruction is still in its window) and {_pct(at_high['off-routine'])} "
        f"off the routine. KL({first} || DT) over all steps: {_nats(kl[first][high]['all'])} "
        f"nats at {high}, {_nats(kl[first][low]['all'])} at {low}; KL({hot} || DT): "
        f"{_nats(kl[hot][high]['all'])} at {high}, {_nats(kl[hot][low]['all'])} at {low}."
    )
    if "PPO LSTM" in agree:
        text += (
            f" The original PPO LSTM agent: agreement {_pct(agree['PPO LSTM'][high]['all'])} "
            f"at {high} (KL {_nats(kl['PPO LSTM'][high]['all'])} nats)."
        )
    else:
        text += " The original PPO LSTM agent's checkpoint was not found (../shared)."
    return text + f" {numbers['n_steps']['all']} steps of {numbers['n_episodes']['all']} episodes."


def run(model: HookedDecisionTransformer, config: ReportConfig) -> Section:
    """Compute the section: KL and agreement per agent, RTG and state kind."""
    agents = demonstrator_agents(model, lstm_path=original_lstm_path())
    episodes = play_episodes(
        agents[0].agent, sampling=DEFAULT_SAMPLING, seed=config.seed,
        max_steps=min(config.max_steps, model.cfg.max_timestep + 1), agent_name="planner",
    )  # fmt: skip
    rtgs = (config.high_rtg, config.low_rtg, RETURN_RTG)
    result = compare_agents(model, episodes, agents, rtgs=rtgs, seed=config.seed)
    summary = result.summary()
    numbers = {
        "agents": list(result.agents),
        "rtgs": list(result.rtg_labels),
        "kinds": list(result.kinds),
        **summary,
        "decision_in_context": _in_context(result, model.cfg.n_timesteps),
        "episodes": {
            "agent": episodes.agent,
            "sampling_per_layout": list(DEFAULT_SAMPLING),
            "n": episodes.n_episodes,
            "success_rate": round(float(np.mean(episodes.demos.episode_returns > 0)), 4),
        },
    }
    high, low = rtg_label(config.high_rtg), rtg_label(config.low_rtg)
    figure = result.plot(
        title="The DT against its demonstrators on the planner's episodes, per state kind"
    )
    return Section(
        key="agent_comparison",
        title="The DT and the agent it simulates",
        figures=[figure],
        numbers=numbers,
        seed_saw=SEED_SAW,
        this_model=_this_model(numbers, high, low),
    )
