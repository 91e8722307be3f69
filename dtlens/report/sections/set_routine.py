"""Finding: the "set routine" and the decision square.

The seed: the model walks a fixed routine — forward to the end of the corridor, turn
towards the target matching the instruction, step on — with disproportionately high
confidence at every step; at RTG 0 it turns the other way. The only real decision is
the left/right turn facing the wall (the decision square).

Here: the greedy trajectory of the model in each layout at the high and the low RTG,
with the probability of each action at every step, drawn as one figure of small
multiples (rows = RTGs, columns = layouts) on one colour scale.
"""

from __future__ import annotations

from dtlens.analysis.edits.routine import GreedyRun, play_greedy
from dtlens.env import ACTION_NAMES, SCENARIOS
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.plotting import plot_action_probability_grid
from dtlens.report.config import ReportConfig
from dtlens.report.section import Section

__all__ = ["greedy_runs", "outcome", "run", "summarise_run"]

SEED_SAW = (
    "A set routine: disproportionately high confidence in every action of the routine "
    "(walk to the end of the corridor, turn towards the object matching the instruction, "
    "walk forward); with RTG 0 the model turns the opposite way and walks to the other "
    "object. The one decision square is the left/right choice facing the wall."
)


def greedy_runs(model: HookedDecisionTransformer, config: ReportConfig) -> list[GreedyRun]:
    """Greedy runs in every layout at the high and the low RTG (high first)."""
    return [
        play_greedy(model, scenario, rtg=rtg, max_steps=config.max_steps, seed=config.seed)
        for rtg in (config.high_rtg, config.low_rtg)
        for scenario in SCENARIOS
    ]


def summarise_run(run: GreedyRun) -> dict:
    """Actions, reward, confidence and the decision (first turn) of one greedy run."""
    turns = [i for i, a in enumerate(run.action_names) if a in ("left", "right")]
    confidence = run.confidence
    return {
        "layout": run.scenario.name,
        "rtg": run.rtg,
        "actions": run.action_names,
        "reward": round(run.reward, 4),
        "success": run.reward > 0,
        "steps": len(run.actions),
        "min_confidence": round(float(confidence.min()), 4),
        "mean_confidence": round(float(confidence.mean()), 4),
        "decision_step": turns[0] + 1 if turns else None,
        "decision": run.action_names[turns[0]] if turns else None,
        "n_turns": len(turns),
    }


def outcome(run: GreedyRun) -> str:
    """How a greedy run ended, in words: ``"solved in 6 steps"``, ``"wrong target in 7
    steps"`` (the episode ended at the other object) or ``"no target in 50 steps"``."""
    n = len(run.actions)
    steps = f"{n} step{'' if n == 1 else 's'}"
    if run.reward > 0:
        return f"solved in {steps}"
    return f"wrong target in {steps}" if run.terminated else f"no target in {steps}"


def run(model: HookedDecisionTransformer, config: ReportConfig) -> Section:
    """Compute the section: one figure of the greedy runs' probability heatmaps (rows =
    RTGs, high first; columns = layouts), and the runs' summaries."""
    runs = greedy_runs(model, config)
    summaries = [summarise_run(r) for r in runs]
    figure = plot_action_probability_grid(
        [r.probs for r in runs],
        action_names=list(ACTION_NAMES),
        step_labels=[[f"{i + 1}: {a}" for i, a in enumerate(r.action_names)] for r in runs],
        titles=[f"{r.scenario.name}, RTG {r.rtg:g}<br>{outcome(r)}" for r in runs],
        columns=len(SCENARIOS),
        title="Greedy actions and their probabilities at each step (rows: RTG; columns: layout)",
    )
    high = [s for s in summaries if s["rtg"] == config.high_rtg]
    low = [s for s in summaries if s["rtg"] == config.low_rtg]
    this_model = (
        f"At RTG {config.high_rtg}: {sum(s['success'] for s in high)}/4 layouts solved, "
        f"in {', '.join(str(s['steps']) for s in high)} steps (optimal: 6); the least "
        f"confident routine step had p = {min(s['min_confidence'] for s in high):.2f}. "
        f"At RTG {config.low_rtg}: {sum(s['success'] for s in low)}/4 solved; first turns: "
        + ", ".join(f"{s['layout']} {s['decision']}" for s in low)
        + "."
    )
    return Section(
        key="set_routine",
        title="The set routine and the decision square",
        figures=[figure],
        numbers={"runs": summaries},
        seed_saw=SEED_SAW,
        this_model=this_model,
    )
