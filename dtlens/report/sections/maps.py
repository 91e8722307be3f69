"""Finding: every square — the model's action probabilities with the agent placed anywhere.

The seed played the model by keyboard in its app to see what it would do off the
routine ("you can ignore the actions of the model and see what it would do"), and
showed animated trajectories at RTG 0 and 0.9 (its Figure 5). Here: the agent is
placed on every square it can stand on, in every facing, in each layout, and the
model's action distribution drawn on the grid (:func:`dtlens.analysis.maps.action_maps`:
the history is the start step followed by the shortest route to the pose); plus GIFs of
greedy play in each layout at the high and the low RTG
(:func:`dtlens.analysis.rollout_gif.greedy_gifs`).
"""

from __future__ import annotations

import math

import torch

from dtlens.analysis.maps import ActionMaps, action_maps
from dtlens.analysis.rollout_gif import RolloutGif, greedy_gifs
from dtlens.env import SCENARIOS, Scenario, optimal_actions
from dtlens.env.poses import decisive_poses
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.report.config import ReportConfig
from dtlens.report.section import Section, SectionImage

__all__ = ["DECISION_POSE", "MOVES", "gif_summary", "map_summary", "run"]

SEED_SAW = (
    "The seed's app let one move the agent anywhere by keyboard and read the model's "
    "preferences there; its Figure 5 animates an RTG 0 and an RTG 0.90 trajectory. At "
    "0.90 the model walks a set routine with high confidence, the one real choice being "
    "the left/right turn facing the wall; with RTG 0 and off the routine its "
    "preferences are far more diffuse, with mass on non-movement actions (drop, done)."
)

#: the decision square at the end of the corridor, facing the wall (east).
DECISION_POSE = (5, 3, 0)
#: the movement actions; the rest (pickup, drop, toggle, done) do nothing useful here.
MOVES = ("left", "right", "forward")


def map_summary(maps: ActionMaps) -> list[dict]:
    """Per layout: the decision square, agreement with the shortest routes, entropy and
    the mass on non-movement actions, over every placed pose."""
    rows = []
    moves = [maps.labels["action"].index(a) for a in MOVES]
    entropies = maps.entropy()  # [instruction, top, x, y, direction]
    for scenario in maps.layouts:
        turn = optimal_actions(scenario.instruction, scenario.top)[4].name  # at the wall
        table = maps.layout_probs(scenario)
        placed = torch.stack([table[p] for p in maps.poses])  # [pose, action]
        decisive = decisive_poses(scenario)
        layout = (
            maps.labels["instruction"].index(scenario.instruction),
            maps.labels["top"].index(scenario.top),
        )
        entropy = torch.stack([entropies[layout][p] for p in maps.poses])  # [pose]
        rows.append(
            {
                "layout": scenario.name,
                "rtg": maps.rtg,
                "decision_left": round(maps.prob(scenario, DECISION_POSE, "left"), 4),
                "decision_right": round(maps.prob(scenario, DECISION_POSE, "right"), 4),
                "turn_to_match": round(maps.prob(scenario, DECISION_POSE, turn), 4),
                "turned_wrong_forward": round(
                    maps.prob(scenario, _facing_other(scenario), "forward"), 4
                ),
                "agree_match": round(maps.agreement(scenario, "match"), 4),
                "decisive_to_match": round(maps.agreement(scenario, "match", decisive), 4),
                "decisive_to_other": round(maps.agreement(scenario, "other", decisive), 4),
                "mean_entropy": round(float(entropy.mean()), 4),
                "non_movement": round(float(1 - placed[:, moves].sum(-1).mean()), 4),
            }
        )
    return rows


def _facing_other(scenario: Scenario) -> tuple[int, int, int]:
    """The decision square, already turned towards the target that does not match."""
    x, y, _ = DECISION_POSE
    return (x, y, 1 if scenario.target == "top" else 3)  # south / north


def gif_summary(gif: RolloutGif, key: str) -> dict:
    """Layout, RTG, actions and outcome of one greedy GIF, and its file name."""
    run = gif.run
    return {
        "layout": run.scenario.name,
        "rtg": run.rtg,
        "steps": len(run.actions),
        "actions": run.action_names,
        "reward": round(run.reward, 4),
        "success": run.reward > 0,
        "frames": int(gif.frames.shape[0]),
        "file": f"{key}_{gif.filename}",
    }


def run(model: HookedDecisionTransformer, config: ReportConfig) -> Section:
    """Compute the section: action maps at the high and the low RTG, and greedy GIFs."""
    rtgs = (config.high_rtg, config.low_rtg)
    all_maps = [action_maps(model, rtg) for rtg in rtgs]
    gifs = greedy_gifs(model, SCENARIOS, rtgs, max_steps=config.max_steps, seed=config.seed)
    summary = [row for maps in all_maps for row in map_summary(maps)]
    gif_rows = [gif_summary(g, "maps") for g in gifs]
    records = [{"rtg": maps.rtg, **record} for maps in all_maps for record in maps.to_records()]
    figures = [
        maps.plot(
            actions=MOVES,
            title=f"RTG {maps.rtg:g}: each move's probability, the agent placed on every "
            "square and facing",
        )
        for maps in all_maps
    ]
    images = [
        SectionImage(
            g.to_bytes(),
            "image/gif",
            f"{g.run.scenario.name}, RTG {g.run.rtg:g}: "
            f"{'reward ' + format(g.run.reward, '.3f') if g.run.reward > 0 else 'no reward'}"
            f" in {len(g.run.actions)} steps",
            g.filename,
        )
        for g in gifs
    ]
    maps0 = all_maps[0]
    return Section(
        key="maps",
        title="Every square: the model's actions anywhere on the grid",
        figures=figures,
        numbers={
            "placement": {
                "layouts": len(maps0.layouts),
                "poses_per_layout": len(maps0.poses),
                "squares": len({p[:2] for p in maps0.poses}),
                "window": maps0.n_steps,
                "padding": maps0.padding,
                "longest_route": max(len(r) for r in maps0.routes),
            },
            "summary": summary,
            "gifs": gif_rows,
            "maps": records,
        },
        seed_saw=SEED_SAW,
        this_model=_this_model(summary, gif_rows, rtgs, len(maps0.poses)),
        images=images,
    )


def _mean(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows if not (isinstance(r[key], float) and math.isnan(r[key]))]
    return sum(values) / len(values) if values else float("nan")


def _this_model(
    summary: list[dict], gifs: list[dict], rtgs: tuple[float, float], n_poses: int
) -> str:
    hi, lo = rtgs
    high = [r for r in summary if r["rtg"] == hi]
    low = [r for r in summary if r["rtg"] == lo]
    solved = {rtg: sum(g["success"] for g in gifs if g["rtg"] == rtg) for rtg in rtgs}
    wrong = _mean(high, "turned_wrong_forward")
    return (
        f"Placed on any of the {n_poses} poses at RTG {hi:g}, the model's most likely action "
        f"starts a shortest route to the matching target at {_mean(high, 'agree_match'):.0%} "
        f"of them (mean over layouts; {_mean(low, 'agree_match'):.0%} at RTG {lo:g}). Facing "
        "the wall at the decision square it turns towards the matching target with p >= "
        f"{min(r['turn_to_match'] for r in high):.2f} at RTG {hi:g} (mean "
        f"{_mean(low, 'turn_to_match'):.2f} at RTG {lo:g}); placed there already turned "
        f"towards the other target, it steps forward onto it with mean p = {wrong:.2f} ("
        + (
            "as in the seed's cached decision: once turned, it goes forward"
            if wrong > 0.5
            else "unlike the seed's cached decision"
        )
        + "). Mean entropy over all poses: "
        f"{_mean(high, 'mean_entropy'):.2f} nats at RTG {hi:g} vs "
        f"{_mean(low, 'mean_entropy'):.2f} at {lo:g}; mass on non-movement actions: "
        f"{_mean(high, 'non_movement'):.2f} vs {_mean(low, 'non_movement'):.2f}. Greedy play "
        f"solves {solved[hi]}/4 layouts at RTG {hi:g} and {solved[lo]}/4 at {lo:g} (GIFs below)."
    )
