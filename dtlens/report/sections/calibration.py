"""Finding: the model is calibrated only as far as its training data demonstrates.

The seed (Figures 3 and 4): the training data (24k episodes of a PPO LSTM agent, 1/3
sampled at temperature 1 and 2/3 at temperature 5) held ~18,000 successes of varying
length, ~2,000 episodes ending at the wrong target and ~4,000 truncations; reward falls
linearly with episode length. The calibration curve (mean reward achieved for each
RTG asked, greedy play) followed the RTG to the extent that the data demonstrated
successes and failures, without learning the relationship between time-to-completion
and reward.

Here:

- the calibration curve: :func:`~dtlens.training.calibration.calibration_curve` over
  ``config.rtgs`` (plus the report's high and low RTG, so both are measured), with
  ``config.calibration_episodes`` greedy episodes per RTG spread evenly over the four
  layouts, all in one batched rollout. Per RTG: mean reward with its 95% normal band,
  success rate with its 95% Wilson interval, mean length, and the success rate in each
  layout. Greedy play in this environment is deterministic, so each RTG's episodes are
  copies of the four layouts' episodes: the intervals describe the balanced layout mix
  (the per-layout rates and the number of distinct outcomes per RTG show what lies
  behind them). With the default 100 episodes and 11 RTGs the section takes ~14 s on
  one CPU thread (of a busy 2-core machine) for a MemoryDT-sized (3 layers, d_model
  256) random model whose 1,100 episodes all run the full 50 steps, and ~9 s for the
  original MemoryDT, which ends most episodes within 10 steps; identical contexts are
  forwarded once, so more episodes cost mostly env steps, and the default needs no
  reduction.
- a fresh sample of the training distribution, collected live: :data:`DATA_EPISODES`
  episodes of :class:`~dtlens.data.agents.planner.BoltzmannPlanner` with the shipped
  MemoryDT's recipe (:data:`dtlens.training.recipe.MEMORYDT_RECIPE`: its logit scale
  and its sampling mix, the seed's 1/3 at temperature 1 and 2/3 at temperature 5, scaled
  down), seeded by ``config.seed`` (~1 s). Its outcome summary and the reward-against-
  length scatter (the seed's Figure 3) show which rewards the data demonstrates: no
  success is shorter than the optimal route, so RTGs above the best return ask for
  more than any demonstration achieved.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from dtlens.data.agents.planner import BoltzmannPlanner
from dtlens.data.collect import SamplingSpec, collect_demonstrations, parse_sampling_spec
from dtlens.data.demonstrations import Demonstrations
from dtlens.env import MEMORY_ENV_ID, SCENARIOS
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.plotting import plot_calibration, plot_reward_length_scatter
from dtlens.report.config import ReportConfig
from dtlens.report.section import Section, round_value
from dtlens.training.calibration import CalibrationResult, calibration_curve
from dtlens.training.recipe import MEMORYDT_RECIPE

__all__ = [
    "DATA_EPISODES",
    "SEED_DATA_FRACTIONS",
    "collect_data_sample",
    "data_by_group",
    "data_sampling",
    "rtg_grid",
    "run",
    "run_calibration",
    "summarise_calibration",
    "summarise_data",
]

#: Episodes of the fresh data sample (the seed's 24k scaled down; ~1 s to collect).
DATA_EPISODES = 300
#: Outcome fractions of the seed's 24k training episodes (Figure 3's caption).
SEED_DATA_FRACTIONS = {"success": 18 / 24, "failure": 2 / 24, "truncated": 4 / 24}

SEED_SAW = (
    "The training data (24k PPO-agent episodes, 1/3 at temperature 1, 2/3 at temperature 5) "
    "held ~18,000 successes of varying length, ~2,000 episodes ending at the wrong target and "
    "~4,000 truncations; reward falls linearly with length. The calibration curve followed "
    "the RTG to the extent that the data demonstrated successful and unsuccessful "
    "trajectories, but the model had not learned the true relationship between "
    "time-to-completion and reward-to-go."
)


def rtg_grid(config: ReportConfig) -> list[float]:
    """``config.rtgs`` plus the high and low RTG, sorted, without duplicates.

    Examples:
        >>> rtg_grid(ReportConfig(rtgs=(0.5, 0.2)))
        [0.0, 0.2, 0.5, 0.9]
    """
    values = [*config.rtgs, config.low_rtg, config.high_rtg]
    return sorted({round(float(v), 9) for v in values})


def run_calibration(model: HookedDecisionTransformer, config: ReportConfig) -> CalibrationResult:
    """Greedy calibration curve over :func:`rtg_grid`, balanced layouts, one batched rollout.

    Short contexts are fed the way the model expects (``model.context_padding``).

    Examples:
        >>> result = run_calibration(model, ReportConfig(calibration_episodes=8))  # doctest: +SKIP
        >>> result.rewards.shape  # doctest: +SKIP
        (11, 8)
    """
    return calibration_curve(
        model,
        rtgs=rtg_grid(config),
        episodes_per_rtg=config.calibration_episodes,
        max_steps=config.max_steps,
        seed=config.seed,
        layouts="balanced",
    )


def data_sampling(n_episodes: int = DATA_EPISODES) -> list[SamplingSpec]:
    """The shipped recipe's sampling groups scaled to ``n_episodes`` in all.

    Examples:
        >>> [(s.temperature, s.n_episodes) for s in data_sampling(300)]
        [(1.0, 100), (5.0, 200)]
    """
    groups = parse_sampling_spec(list(MEMORYDT_RECIPE.sampling))
    total = sum(g.n_episodes for g in groups)
    counts = [max(1, round(g.n_episodes * n_episodes / total)) for g in groups]
    return [g._replace(n_episodes=n) for g, n in zip(groups, counts, strict=True)]


def collect_data_sample(config: ReportConfig, n_episodes: int = DATA_EPISODES) -> Demonstrations:
    """A fresh sample of the training distribution: planner demonstrations, seeded.

    Examples:
        >>> demos = collect_data_sample(ReportConfig())  # doctest: +SKIP
        >>> demos.n_episodes  # doctest: +SKIP
        300
    """
    return collect_demonstrations(
        BoltzmannPlanner(logit_scale=MEMORYDT_RECIPE.planner_scale),
        MEMORY_ENV_ID,
        data_sampling(n_episodes),
        n_envs=32,
        max_steps=config.max_steps,
        seed=config.seed,
        show_progress=False,
    )


def summarise_calibration(result: CalibrationResult, config: ReportConfig) -> dict:
    """Per-RTG success, reward (with 95% intervals) and length; per-layout success."""
    s_lo, s_hi = result.success_ci()
    r_lo, r_hi = result.reward_ci()
    per_rtg = [
        {
            "rtg": round_value(rtg),
            "success_rate": round_value(result.success_rate[i]),
            "success_ci95": [round_value(s_lo[i]), round_value(s_hi[i])],
            "mean_reward": round_value(result.mean_reward[i]),
            "reward_ci95": [round_value(r_lo[i]), round_value(r_hi[i])],
            "mean_length": round_value(result.mean_length[i]),
        }
        for i, rtg in enumerate(result.rtgs)
    ]
    layouts = np.asarray(result.layouts)
    by_layout = {
        s.name: [round_value(v) for v in result.success[:, layouts == s.name].mean(axis=1)]
        for s in SCENARIOS
        if (layouts == s.name).any()
    }
    gaps = np.abs(result.mean_reward - result.rtgs)
    distinct = [
        len(set(zip(layouts, result.rewards[i], result.lengths[i], strict=True)))
        for i in range(len(result.rtgs))
    ]
    return {
        "rtgs": [round_value(r) for r in result.rtgs],
        "episodes_per_rtg": result.n_episodes,
        "per_rtg": per_rtg,
        "success_by_layout": by_layout,
        "at_high_rtg": per_rtg[result.at(config.high_rtg)],
        "at_low_rtg": per_rtg[result.at(config.low_rtg)],
        "mean_abs_reward_minus_rtg": round_value(gaps.mean()),
        "distinct_outcomes_per_rtg": distinct,
    }


def summarise_data(demos: Demonstrations) -> dict:
    """Outcome fractions, returns and lengths of the data sample (with the seed's fractions)."""
    summary = demos.summary()
    returns = demos.episode_returns
    lengths = demos.episode_lengths
    success = demos.outcomes() == "success"

    return {
        "n_episodes": demos.n_episodes,
        "sampling": [
            f"{g['n_episodes']} at {g['label']}"
            for part in demos.header.get("parts", [])
            for g in part.get("sampling", [])
        ],
        "planner_scale": float(MEMORYDT_RECIPE.planner_scale),
        "outcome_fractions": _fractions(summary),
        "seed_outcome_fractions": {k: round_value(v) for k, v in SEED_DATA_FRACTIONS.items()},
        "mean_return": round_value(summary["mean_return"]),
        "best_return": round_value(returns.max()) if returns.size else 0.0,
        "success_length_range": (
            [int(lengths[success].min()), int(lengths[success].max())] if success.any() else []
        ),
        "mean_length": round_value(summary["length"]["mean"]),
    }


def data_by_group(demos: Demonstrations) -> dict[str, dict[str, float]]:
    """Outcome fractions of each sampling group, e.g. ``{"temperature=1": {"success": ...}}``."""
    return {
        label.split("/", 1)[-1]: _fractions(part)
        for label, part in demos.summary().get("groups", {}).items()
    }


def _fractions(part: dict) -> dict[str, float]:
    return {k: round_value(part[f"{k}_fraction"]) for k in SEED_DATA_FRACTIONS}


def run(model: HookedDecisionTransformer, config: ReportConfig) -> Section:
    """Compute the section: the calibration curve and the data's reward-vs-length scatter."""
    result = run_calibration(model, config)
    demos = collect_data_sample(config)
    numbers = summarise_calibration(result, config)
    numbers["data"] = summarise_data(demos)
    numbers["data_by_group"] = data_by_group(demos)
    figures: list[go.Figure] = [
        plot_calibration(
            result.rtgs,
            result.rewards,
            result.success,
            band="95ci" if result.n_episodes > 1 else "none",
            title=f"Calibration: reward achieved against RTG asked ({result.n_episodes} greedy "
            "episodes per RTG, balanced layouts)",
        ),
        plot_reward_length_scatter(
            demos.episode_returns,
            demos.episode_lengths,
            demos.outcomes() == "success",
            title=f"The data: reward against length, {demos.n_episodes} fresh planner "
            f"demonstrations ({', '.join(numbers['data']['sampling'])})",
        ),
    ]
    return Section(
        key="calibration",
        title="Calibration: reward achieved against RTG asked, and the data behind it",
        figures=figures,
        numbers=numbers,
        seed_saw=SEED_SAW,
        this_model=_describe(numbers),
    )


def _describe(n: dict) -> str:
    """The section's summary, written from its numbers."""
    hi, lo, data = n["at_high_rtg"], n["at_low_rtg"], n["data"]
    rows = n["per_rtg"]
    peak = max(rows, key=lambda r: r["mean_reward"])
    rises = hi["success_rate"] > lo["success_rate"]
    above = [r["rtg"] for r in rows if r["rtg"] > data["best_return"]]
    f, seed = data["outcome_fractions"], data["seed_outcome_fractions"]
    span = data["success_length_range"]
    text = (
        f"At RTG {hi['rtg']:g}: success {hi['success_rate']:.0%} (95% CI "
        f"{hi['success_ci95'][0]:.0%}-{hi['success_ci95'][1]:.0%}), mean reward "
        f"{hi['mean_reward']:.2f}; at RTG {lo['rtg']:g}: success {lo['success_rate']:.0%}, mean "
        f"reward {lo['mean_reward']:.2f} ({n['episodes_per_rtg']} greedy episodes per RTG"
        + (
            f"; at most {max(n['distinct_outcomes_per_rtg'])} distinct (layout, reward, length) "
            "outcomes per RTG, so the intervals describe the balanced layout mix"
            if max(n["distinct_outcomes_per_rtg"]) <= len(n["success_by_layout"])
            else ""
        )
        + "). "
        + (
            "Success rises with the RTG asked"
            if rises
            else "Success does not rise from the low to the high RTG"
        )
        + f"; the highest mean reward, {peak['mean_reward']:.2f}, is at RTG {peak['rtg']:g}, and "
        f"the mean |reward - RTG| over the grid is {n['mean_abs_reward_minus_rtg']:.2f}. "
        f"The data sample ({data['n_episodes']} planner episodes): {f['success']:.0%} successes, "
        f"{f['failure']:.0%} at the wrong target, {f['truncated']:.0%} truncated (the seed's "
        f"data: {seed['success']:.0%}, {seed['failure']:.0%}, {seed['truncated']:.0%})"
    )
    if span:
        text += (
            f"; successes took {span[0]}-{span[1]} steps, so the best return demonstrated is "
            f"{data['best_return']:.2f}"
        )
    text += "."
    if above:
        text += (
            f" RTGs {', '.join(f'{r:g}' for r in above)} ask for more than any demonstration "
            "achieved."
        )
    return text
