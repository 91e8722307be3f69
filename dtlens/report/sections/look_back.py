"""Finding: the "look back" exception at the decision square.

The seed: one exception to the routine — with RTG ~0.9, instruction key and the key
up, greedy play turns right twice ("looks back" at the instruction), turns right
again and then succeeds; at RTG 0 in that layout the model turns right (towards the
ball) 88% of the time.

Here: for each layout and RTG, the left - right logit difference at the decision
square (the end of the corridor, facing the wall, reached by the optimal route) and
whether the greedy trajectory takes more than one turn before reaching a target.
"""

from __future__ import annotations

import torch

from dtlens.analysis.edits.routine import play_greedy
from dtlens.analysis.edits.scenarios import layout_batch
from dtlens.analysis.metrics import action_probability, logit_diff
from dtlens.env import SCENARIOS
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.plotting.bars import plot_grouped_bars
from dtlens.report.config import ReportConfig
from dtlens.report.section import Section

__all__ = ["decision_square_preferences", "run"]

SEED_SAW = (
    "An exception to the set routine only with RTG ~0.9, instruction = key and the key up: "
    "greedy play turns right twice ('sees the instruction token'), turns right again and "
    "collects the reward. With RTG 0 in that layout the model turns right, towards the "
    "ball, 88% of the time."
)


@torch.no_grad()
def decision_square_preferences(
    model: HookedDecisionTransformer, rtg: float
) -> list[dict[str, float | str]]:
    """Left-right logit difference and turn probabilities at the decision square, per layout."""
    batches = [layout_batch(s, rtg=rtg, model=model) for s in SCENARIOS]
    batch = TrajectoryBatch.cat(batches).to(model.device)
    logits = model(batch)
    diff = logit_diff(logits, "left", "right", model=model)
    p_left = action_probability(logits, "left", model=model)
    p_right = action_probability(logits, "right", model=model)
    return [
        {
            "layout": s.name,
            "rtg": rtg,
            "correct_turn": "left" if s.target == "top" else "right",
            "logit_diff_left_minus_right": round(float(diff[i]), 4),
            "p_left": round(float(p_left[i]), 4),
            "p_right": round(float(p_right[i]), 4),
        }
        for i, s in enumerate(SCENARIOS)
    ]


def run(model: HookedDecisionTransformer, config: ReportConfig) -> Section:
    """Compute the section: decision-square preferences and greedy turn counts."""
    rows = []
    for rtg in (config.high_rtg, config.low_rtg):
        for row, scenario in zip(decision_square_preferences(model, rtg), SCENARIOS, strict=True):
            greedy = play_greedy(model, scenario, rtg=rtg, max_steps=config.max_steps)
            names = greedy.action_names
            turns = [a for a in names if a in ("left", "right")]
            row.update(
                greedy_actions=names,
                greedy_reward=round(greedy.reward, 4),
                n_turns=len(turns),
                look_back=len(turns) > 1 and greedy.terminated,
            )
            rows.append(row)
    figure = plot_grouped_bars(
        _diff_table(rows),
        y_title="logit(left) - logit(right) at the decision square",
        title="Turn preference at the decision square (positive = left)",
    )
    exceptions = [f"{r['layout']} at RTG {r['rtg']}" for r in rows if r["look_back"]]
    low = [r for r in rows if r["rtg"] == config.low_rtg]
    this_model = (
        ("Look-back trajectories (more than one turn): " + ", ".join(exceptions) + ". ")
        if exceptions
        else "This model has no look-back exception: every greedy trajectory turns once. "
    ) + (
        f"At RTG {config.low_rtg} the probability of the correct turn at the decision square "
        "is " + ", ".join(f"{r['layout']} {r['p_' + r['correct_turn']]:.2f}" for r in low) + "."
    )
    return Section(
        key="look_back",
        title='The "look back" exception',
        figures=[figure],
        numbers={"rows": rows, "look_back_cases": exceptions},
        seed_saw=SEED_SAW,
        this_model=this_model,
    )


def _diff_table(rows: list[dict]) -> dict[str, dict[str, float]]:
    """``{layout: {"RTG x": logit diff}}`` for the grouped bar chart."""
    table: dict[str, dict[str, float]] = {}
    for r in rows:
        table.setdefault(r["layout"], {})[f"RTG {r['rtg']}"] = r["logit_diff_left_minus_right"]
    return table
