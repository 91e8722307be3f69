"""Finding: how MemoryDT learned to remember (training dynamics).

The seed asked for "storing model checkpoints and applying progress measures". A model
built by ``dtlens build-memorydt`` carries ``dynamics.json`` beside its weights: the
progress measures of :mod:`dtlens.training.progress` at every training checkpoint.
This section plots them and says, from the numbers, when the plateau broke and which
measure moved first. Models without the file (an original checkpoint, a model from
``dtlens train``) get a note on how to compute it from their run's checkpoints.
"""

from __future__ import annotations

from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.plotting.dynamics import plot_dynamics
from dtlens.report.config import ReportConfig
from dtlens.report.section import Section
from dtlens.training.dynamics import DYNAMICS_FILE, Dynamics

__all__ = ["describe", "run"]

TITLE = "How MemoryDT learned to remember"
#: checkpoints before three times the escape step that make a close-up worth drawing
CLOSE_UP_POINTS = 8
SEED_SAW = (
    "The seed did not study training: it proposed storing model checkpoints and applying "
    "progress measures to see how the memory circuit forms."
)


def describe(dynamics: Dynamics) -> str:
    """What the measures say, in sentences computed from them.

    Example:
        >>> d = Dynamics([0, 100, 200], {"success@0.9": [0.5, 0.5, 1.0],
        ...                              "decision_loss": [0.69, 0.3, 0.01]})
        >>> describe(d).split(". ")[0]
        'Greedy success at RTG 0.9 reached and kept >= 95 % from step 200 (of 200)'
    """
    story = dynamics.story()
    broke = story["plateau_broke_at"]
    last = dynamics.steps[-1]
    if broke is None:
        text = f"Greedy success at RTG 0.9 never stayed >= 95 % over the run (to step {last}). "
    else:
        text = f"Greedy success at RTG 0.9 reached and kept >= 95 % from step {broke} (of {last}). "
    moved = {k: v for k, v in story["moved_at"].items() if v is not None}
    if moved:
        order = sorted(moved.items(), key=lambda kv: kv[1])
        text += (
            "Measures in the order they left the plateau (first step from which each stays "
            "past its threshold): " + ", ".join(f"{k} at {v}" for k, v in order) + ". "
        )
        text += f"First to move: {', '.join(story['first_to_move'])}."
        for name, step in moved.items():
            text += _started_past(dynamics, name, story["thresholds"][name], step)
    else:
        text += "No progress measure left the plateau."
    if story["past_at_start"]:
        text += (
            " Already past their thresholds in the initial weights, so they say nothing "
            f"about learning: {', '.join(story['past_at_start'])} (at initialisation "
            "attention is nearly uniform, so every token's residual stream holds an average "
            "of the first state, from which a linear probe can read the instruction)."
        )
    return text


def run(model: HookedDecisionTransformer, config: ReportConfig) -> Section:
    """The dynamics recorded beside the model's weights, plotted and described."""
    del config  # the measures were taken at build time
    directory = model.checkpoint_dir
    path = None if directory is None else directory / DYNAMICS_FILE
    if path is None or not path.exists():
        return Section(
            key="dynamics",
            title=TITLE,
            numbers={"recorded": False},
            seed_saw=SEED_SAW,
            this_model=(
                "This model has no dynamics.json beside its weights (only models built by "
                "`dtlens build-memorydt` carry one). For a run of `dtlens train` with "
                "checkpoints, compute it with `dtlens dynamics --run-dir RUN_DIR`."
            ),
        )
    dynamics = Dynamics.load(path)
    story = dynamics.story()
    figures = [plot_dynamics(dynamics, title="The whole run")]
    broke = story["plateau_broke_at"]
    if broke and sum(step <= 3 * broke for step in dynamics.steps) >= CLOSE_UP_POINTS:
        figures.append(plot_dynamics(dynamics, title="Close-up: the escape", max_step=3 * broke))
    return Section(
        key="dynamics",
        title=TITLE,
        figures=figures,
        numbers={
            "recorded": True,
            "n_checkpoints": len(dynamics.steps),
            "steps": dynamics.steps,
            "plateau_broke_at": story["plateau_broke_at"],
            "moved_at": story["moved_at"],
            "past_at_start": story["past_at_start"],
            "first_to_move": story["first_to_move"],
            "final": {k: v[-1] for k, v in dynamics.measures.items() if v and v[-1] is not None},
        },
        seed_saw=SEED_SAW,
        this_model=describe(dynamics),
    )


def _started_past(dynamics: Dynamics, name: str, rule: list, moved_at: int) -> str:
    """A note when a measure was already past its threshold in the initial weights."""
    direction, threshold = rule
    before = dynamics.steps.index(moved_at)
    values = [v for v in dynamics.series(name)[:before] if v is not None]
    if not values:
        return ""
    start = values[0]
    if (start > threshold) if direction == "above" else (start < threshold):
        worst = min(values) if direction == "above" else max(values)
        return (
            f" ({name} was {start:.2f} in the initial weights already, fell to {worst:.2f} "
            "on the plateau, and only then rose for good.)"
        )
    return ""
