"""Finding: at RTG 0, off the set routine, the model's preferences are diffuse.

The seed: "When the RTG token is set to 0, the model's preferences are far more
diffuse and generally have a much higher entropy", putting mass on non-kinetic actions
(done, drop) which it never does at RTG 0.9.

Here: the entropy of the action distribution on the routine (every prefix of the
optimal route) and off it (the last step of short uniformly random walks), at the high
and the low RTG, over the four layouts, in one batched forward.
"""

from __future__ import annotations

import numpy as np
import torch

from dtlens.analysis.edits.scenarios import layout_batch
from dtlens.analysis.metrics import action_entropy
from dtlens.env import N_ACTIONS, SCENARIOS, optimal_actions
from dtlens.errors import EnvError
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.plotting.bars import plot_grouped_bars
from dtlens.report.config import ReportConfig
from dtlens.report.section import Section

__all__ = ["off_routine_routes", "on_routine_routes", "run"]

SEED_SAW = (
    "With RTG 0 the preferences are far more diffuse (higher entropy), with probability on "
    "non-kinetic actions such as done or drop, never the case at RTG 0.9; most visible off "
    "the set routine."
)


def on_routine_routes(scenario) -> list[list[int]]:
    """Every proper prefix of the optimal route (the states the routine visits)."""
    route = [int(a) for a in optimal_actions(scenario.instruction, scenario.top)]
    return [route[:k] for k in range(len(route))]


def off_routine_routes(scenario, n_walks: int, length: int, seed: int) -> list[list[int]]:
    """``n_walks`` uniformly random routes of ``length`` actions that leave the routine.

    A walk counts only if it is not a prefix of the optimal route and does not end the
    episode (it must leave the model a decision to make).
    """
    optimal = [int(a) for a in optimal_actions(scenario.instruction, scenario.top)]
    rng = np.random.default_rng(seed)
    walks: list[list[int]] = []
    for _ in range(50 * n_walks):
        walk = [int(a) for a in rng.integers(0, N_ACTIONS, size=length)]
        if walk != optimal[:length] and _keeps_going(scenario, walk):
            walks.append(walk)
        if len(walks) == n_walks:
            return walks
    raise EnvError(f"could not draw {n_walks} off-routine walks in {scenario.name}")


def _keeps_going(scenario, route: list[int]) -> bool:
    try:
        layout_batch(scenario, actions=route, n_steps=None)
    except EnvError:
        return False
    return True


@torch.no_grad()
def _entropies(model: HookedDecisionTransformer, routes, rtg: float) -> np.ndarray:
    batches = [layout_batch(s, actions=r, rtg=rtg, model=model) for s, r in routes]
    logits = model(TrajectoryBatch.cat(batches).to(model.device))
    return action_entropy(logits, model=model).cpu().numpy()


def run(model: HookedDecisionTransformer, config: ReportConfig) -> Section:
    """Compute the section: mean entropy on/off routine x RTG, with standard errors."""
    on = [(s, r) for s in SCENARIOS for r in on_routine_routes(s)]
    off = [
        (s, r)
        for i, s in enumerate(SCENARIOS)
        for r in off_routine_routes(s, config.random_walks, length=4, seed=config.seed + i)
    ]
    means: dict[str, dict[str, float]] = {"on routine": {}, "off routine": {}}
    errors: dict[str, dict[str, float]] = {"on routine": {}, "off routine": {}}
    for rtg in (config.high_rtg, config.low_rtg):
        for label, routes in (("on routine", on), ("off routine", off)):
            values = _entropies(model, routes, rtg)
            means[label][f"RTG {rtg}"] = round(float(values.mean()), 4)
            errors[label][f"RTG {rtg}"] = round(float(values.std() / np.sqrt(len(values))), 4)
    figure = plot_grouped_bars(
        means,
        y_title="entropy of the action distribution (nats)",
        title=f"Action entropy on and off the routine (max = ln 7 = {np.log(7):.2f})",
        errors=errors,
    )
    hi, lo = f"RTG {config.high_rtg}", f"RTG {config.low_rtg}"
    this_model = (
        f"Mean entropy on the routine: {means['on routine'][hi]:.2f} ({hi}) vs "
        f"{means['on routine'][lo]:.2f} ({lo}); off the routine: "
        f"{means['off routine'][hi]:.2f} vs {means['off routine'][lo]:.2f} nats "
        f"({len(on)} on-routine and {len(off)} off-routine states)."
    )
    return Section(
        key="rtg_entropy",
        title="RTG 0 makes preferences diffuse",
        figures=[figure],
        numbers={
            "mean_entropy": means,
            "standard_error": errors,
            "n_on": len(on),
            "n_off": len(off),
        },
        seed_saw=SEED_SAW,
        this_model=this_model,
    )
