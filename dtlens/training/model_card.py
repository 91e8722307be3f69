"""MODEL_CARD.md of a MemoryDT built by ``dtlens build-memorydt``.

The card is written from the build's own numbers (data summary, training history,
calibration, training dynamics, wall times) plus the table of measured runs that
chose the recipe (``plateau_runs.md`` beside this module, also shown in
docs/training.md).

Example:
    >>> from dtlens.training.recipe import RECIPES
    >>> print(rebuild_command(RECIPES["seed"]))
    dtlens build-memorydt --architecture seed --out dtlens/pretrained/memorydt
"""

from __future__ import annotations

import platform
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from dtlens.model.config import DTConfig
from dtlens.training.calibration import CalibrationResult
from dtlens.training.config import TrainConfig
from dtlens.training.dynamics import Dynamics
from dtlens.training.recipe import REBUILD_COMMAND, Recipe
from dtlens.training.trainer import Trainer, TrainHistory

__all__ = ["rebuild_command", "render_clone_card", "render_model_card", "runs_table"]

#: the command that rebuilds the shipped behavioural clone
CLONE_REBUILD_COMMAND = (
    "dtlens build-memorydt --model-type clone --out dtlens/pretrained/memorydt-clone "
    "--run-dir runs/memorydt-clone"
)


def runs_table() -> str:
    """The measured runs that chose the recipe (markdown), shared with docs/training.md.

    Example:
        >>> runs_table().count("| O4 |")
        1
    """
    return (resources.files("dtlens.training") / "plateau_runs.md").read_text(encoding="utf-8")


def rebuild_command(recipe: Recipe) -> str:
    """The command that rebuilds a model with this recipe.

    Example:
        >>> from dtlens.training.recipe import RECIPES
        >>> rebuild_command(RECIPES["original"])
        'dtlens build-memorydt --out dtlens/pretrained/memorydt'
    """
    base = REBUILD_COMMAND
    if recipe.train.model.model_type == "clone":
        base = CLONE_REBUILD_COMMAND
    steps = recipe.train.total_steps
    if recipe.architecture != "original":
        base = base.replace(
            "build-memorydt", f"build-memorydt --architecture {recipe.architecture}"
        )
    if base == CLONE_REBUILD_COMMAND and steps != _default_steps(recipe):
        base += f" --total-steps {steps}"
    return base


def _default_steps(recipe: Recipe) -> int:
    from dtlens.training.recipe import RECIPES

    return RECIPES[recipe.architecture].train.total_steps


def render_model_card(
    recipe: Recipe,
    data_summary: dict[str, Any],
    trainer: Trainer,
    history: TrainHistory,
    calibration: CalibrationResult,
    verdict: dict[str, Any],
    timings: dict[str, float],
    dynamics: Dynamics | None = None,
    threads: int | None = None,
    *,
    run_dir: str | Path,
) -> str:
    """MODEL_CARD.md of a built MemoryDT: data, training, dynamics, calibration, rebuild.

    ``run_dir`` is the build's directory of intermediate files (demonstrations, and the
    training checkpoints in ``run_dir/train``), which the card names.

    Example:
        >>> card = render_model_card(  # doctest: +SKIP
        ...     recipe, summary, trainer, history, result, verdict, timings, dynamics,
        ...     run_dir="runs/memorydt")
    """
    cfg, tc = recipe.train.model, recipe.train
    groups = data_summary.get("groups", {})
    group_rows = "\n".join(
        f"| {label} | {g['n_episodes']} | {g['success_fraction']:.1%} | "
        f"{g['failure_fraction']:.1%} | {g['truncated_fraction']:.1%} | "
        f"{g['length']['mean']:.1f} | {g['mean_return']:.3f} |"
        for label, g in [*groups.items(), ("all", data_summary)]
    )
    val = history.val[-1]["val/loss"] if history.val else float("nan")
    total = sum(timings.values())
    params = sum(p.numel() for p in trainer.model.parameters())
    return f"""# MemoryDT (dtlens build)

A decision transformer for `{recipe.env_id}` ({_shape_sentence(recipe)}), trained by
dtlens on demonstrations of an exact Boltzmann planner. Load it with
`dtlens.load("memorydt")`.

## Rebuild

```
{rebuild_command(recipe)}
```

Collects the data, trains, calibrates, measures the training dynamics and rewrites this
directory; it needs nothing outside the package. Wall time of this build on
{_machine(threads)}: collection {timings.get("collect_s", 0):.0f} s, training
{timings.get("train_s", 0):.0f} s, calibration {timings.get("calibrate_s", 0):.0f} s,
dynamics {timings.get("dynamics_s", 0):.0f} s (total {total / 60:.1f} min).
Intermediate files go to `{Path(run_dir).as_posix()}/` (git-ignored): the demonstrations and the
training checkpoints (`step_0` is the initial weights; {_checkpoint_sentence(tc)});
an interrupted build resumes from its last checkpoint.

## Architecture

{cfg.n_layers} layers, d_model {cfg.d_model}, {cfg.n_heads} heads x {cfg.d_head}, d_mlp
{cfg.d_mlp}, {_mlp(cfg)} MLP, {cfg.normalization} LayerNorm, n_ctx {cfg.n_ctx}
({cfg.n_timesteps} timesteps of R, S, A tokens), one-hot 7x7x20 grid states, embedding
time over timesteps 0..{cfg.max_timestep}; {params:,} parameters. Trained with the
padding mask (left-padded windows mask their padding), so unpadded and mask-padded
contexts give the same actions.

## Data

{sum(g["n_episodes"] for g in groups.values()) or data_summary["n_episodes"]} episodes of
`BoltzmannPlanner(logit_scale={recipe.planner_scale:g})` (optimal Q-values in units of one
step's reward, times {recipe.planner_scale:g}, sampled at temperature T: a wasted step is
e^({recipe.planner_scale:g}/T) times less likely than the best action), sampling groups
{", ".join(f"`{s}`" for s in recipe.sampling)} (temperature:episodes, the seed's
1/3 at temperature 1 and 2/3 at temperature 5), max_steps {recipe.max_steps}, collection
seed {recipe.collect_seed}.

| group | episodes | success | wrong target | truncated | mean length | mean return |
|---|---:|---:|---:|---:|---:|---:|
{group_rows}

## Training

{_curriculum_paragraph(tc)}

AdamW (lr {tc.lr:g} after {tc.warmup_steps} warm-up steps, {_schedule(tc)} to {tc.lr_end:g}, weight
decay {tc.weight_decay:g} on matrices, betas {tc.betas}), gradient clipping at
{tc.grad_clip}, batch {tc.batch_size} windows of {tc.n_steps} timesteps, {trainer.step}
steps, seed {tc.seed}, device {tc.device}; {tc.val_fraction:.0%} of episodes held out.
Training windows weigh every episode the same (`window_weighting="{tc.window_weighting}"`:
an episode drawn uniformly, then a window end among its steps), and with probability
{tc.window_end_fraction:g} a window is moved to end at its episode's last step (the
original project's `prob_go_from_end`).
Final training loss {history.train[-1]["train/loss"]:.4f} (last batch), validation loss
{val:.4f} (cross-entropy per action; uniform guessing is ln 7 = 1.946).

## Calibration

Greedy actions, {calibration.n_episodes} episodes per RTG with the 4 layouts in turn
(episode j of every RTG uses seed j), max_steps {recipe.max_steps}. Success = reaching
the target that matches the instruction; reward = 1 - 0.9 * steps / {recipe.max_steps}
there, else 0 (optimal: 6 steps, 0.892). Intervals: Wilson score for success rates,
normal approximation for mean rewards. With greedy actions the environment is
deterministic given the layout, so each RTG's episodes repeat 4 trajectories.

{calibration.table()}

Requirement (success >= {recipe.required_success_high:.0%} at RTG 0.9 in each layout and
<= {recipe.required_success_low:.0%} at RTG 0, with unpadded and with mask-padded
contexts): **{"met" if verdict["passed"] else "NOT met"}** ({verdict["high"]:.1%} and
{verdict["low"]:.1%} unpadded; per layout at RTG 0.9:
{", ".join(f"{k} {v:.0%}" for k, v in verdict["high_by_layout"].items())}; mask-padded
contexts, one greedy episode per layout: RTG 0.9
{", ".join(f"{k} {v:.0%}" for k, v in verdict["masked"]["success_at_0.9"].items())}, RTG 0
{", ".join(f"{k} {v:.0%}" for k, v in verdict["masked"]["success_at_0"].items())}).

Recompute with `dtlens calibrate --model memorydt --episodes-per-rtg
{calibration.n_episodes}`; the per-episode results are in `calibration.json`.
{_layout_paragraph(calibration)}
{_dynamics_section(dynamics, run_dir, "Greedy success at RTG 0.9")}
## How the recipe was chosen

{runs_table()}

## Differences from the seed's MemoryDT

The seed's demonstrations came from a PPO LSTM agent; these come from an exact planner,
whose failures at high temperature are mostly truncations (wandering until the step
limit) rather than walks to the wrong target: see the data table above.
{_shape_difference(recipe)}"""


def render_clone_card(
    recipe: Recipe,
    data_summary: dict[str, Any],
    trainer: Trainer,
    history: TrainHistory,
    verdict: dict[str, Any],
    timings: dict[str, float],
    dynamics: Dynamics | None = None,
    *,
    run_dir: str | Path,
) -> str:
    """MODEL_CARD.md of a behavioural clone built on the MemoryDT's demonstrations.

    A clone reads no RTG, so the card reports greedy success per layout and makes no
    calibration claims. ``run_dir``: the build's directory of intermediate files (its
    training checkpoints are in ``run_dir/train``), which the card names.

    Example:
        >>> card = render_clone_card(  # doctest: +SKIP
        ...     recipe, summary, trainer, history, verdict, timings, dynamics,
        ...     run_dir="runs/memorydt-clone")
    """
    cfg, tc = recipe.train.model, recipe.train
    val = history.val[-1]["val/loss"] if history.val else float("nan")
    total = sum(timings.values())
    params = sum(p.numel() for p in trainer.model.parameters())
    shipped = _default_steps(recipe)
    shortened = (
        ""
        if tc.total_steps == shipped
        else f"\n**Shortened build:** {tc.total_steps} training steps instead of the recipe's "
        f"{shipped} (the curriculum and checkpoints scaled with it), to fit the build in "
        "the time available on a loaded 2-core machine.\n"
    )
    by_layout = ", ".join(f"{k} {v:.0%}" for k, v in verdict["by_layout"].items())
    masked = ", ".join(f"{k} {v:.0%}" for k, v in verdict["masked"]["success"].items())
    return f"""# MemoryDT behavioural clone (dtlens build)

A behavioural clone for `{recipe.env_id}`: the MemoryDT's architecture and training
recipe, trained on the same planner demonstrations, but with `model_type="clone"`:
its tokens are S, A per step and it reads **no return-to-go**. Load it with
`dtlens.load("memorydt-clone")`; the report's `clone` section compares it with the
MemoryDT (`dtlens.load("memorydt")`).
{shortened}
## Rebuild

```
{rebuild_command(recipe)}
```

Wall time of this build on {_machine()}: collection {timings.get("collect_s", 0):.0f} s,
training {timings.get("train_s", 0):.0f} s, evaluation {timings.get("calibrate_s", 0):.0f} s,
dynamics {timings.get("dynamics_s", 0):.0f} s (total {total / 60:.1f} min).

## Architecture

{cfg.n_layers} layers, d_model {cfg.d_model}, {cfg.n_heads} heads x {cfg.d_head}, d_mlp
{cfg.d_mlp}, {_mlp(cfg)} MLP, n_ctx {cfg.n_ctx} ({cfg.n_timesteps} timesteps of S, A
tokens: the MemoryDT's context in timesteps), {params:,} parameters.

## Data and training

The MemoryDT's demonstrations ({data_summary["n_episodes"]} episodes of
`BoltzmannPlanner(logit_scale={recipe.planner_scale:g})`, sampling groups
{", ".join(f"`{s}`" for s in recipe.sampling)}, success
{data_summary["success_fraction"]:.1%}); a clone imitates all of them alike, the
temperature-5 ones included, since it cannot be told which return to aim for.

{_clone_curriculum(tc)}

{trainer.step} steps, batch {tc.batch_size}; final training loss
{history.train[-1]["train/loss"]:.4f}, validation loss {val:.4f}.

## Evaluation (no RTG calibration)

A clone has no RTG input, so there is no calibration curve: `calibration.json` holds one
row (labelled RTG 0.9, which the clone ignores) of greedy episodes, the 4 layouts in
turn. Greedy success {verdict["success"]:.1%}; per layout: {by_layout}; mask-padded
contexts, one greedy episode per layout: {masked}.

Requirement (greedy success >= {recipe.required_success_high:.0%} in each layout, unpadded
and mask-padded): **{"met" if verdict["passed"] else "NOT met"}**.
{_dynamics_section(dynamics, run_dir, "Greedy success (no RTG)")}"""


def _clone_curriculum(tc: TrainConfig) -> str:
    """The curriculum's phases, without the DT's RTG and run-table remarks."""
    if not tc.curriculum:
        return _NO_CURRICULUM
    return (
        _curriculum_phases(tc) + ". The first phase shows the memory decision in every "
        "window; the clone uses the MemoryDT's curriculum unchanged (whether a clone needs it "
        "was not measured)."
    )


def _layout_paragraph(calibration: CalibrationResult) -> str:
    """Success per layout at RTG 0.9, and what a 2-of-4 pattern means (empty if all pass)."""
    per_layout = calibration.success_by_layout(0.9)
    if min(per_layout.values()) >= 0.95:
        return ""
    rows = ", ".join(f"{name} {rate:.0%}" for name, rate in per_layout.items())
    return f"""
**Success per layout at RTG 0.9:** {rows}. A model that reaches the right target in
exactly the layouts whose turn is the same has learned the routine but not the
memory: it turns at the decision square without reading the instruction, which only
the first observation shows. That decision is an XOR of the instruction (first
observation) and the target order (current view): neither alone predicts the turn, so
gradient descent gets no first-order signal for either and plateaus at a coin flip.
"""


def _machine(threads: int | None = None) -> str:
    threads = torch.get_num_threads() if threads is None else threads
    return f"{platform.machine()} CPU, {threads} torch thread{'s' if threads != 1 else ''}"


def _checkpoint_sentence(tc: TrainConfig) -> str:
    if tc.checkpoint_every is None:
        return "no others"
    text = f"every {tc.checkpoint_every} steps"
    if tc.checkpoint_steps:
        dense = tc.checkpoint_steps
        text = f"{len(dense)} more from step {dense[0]} to {dense[-1]}, and {text}"
    return text


def _shape_sentence(recipe: Recipe) -> str:
    if recipe.architecture == "seed":
        return "the seed post's MemoryDT shape: 3 layers, d_model 256, 8 heads, GELU MLP"
    return (
        "the shape of the original project's working Memory DT: 2 layers, d_model 128, "
        "4 heads, gated ReLU MLP"
    )


def _shape_difference(recipe: Recipe) -> str:
    if recipe.architecture == "seed":
        return ""
    return """
The seed's MemoryDT had 3 layers, d_model 256 and 8 heads. This model has the original
project's own working shape (2 layers, d_model 128, 4 heads, gated ReLU MLP, 100 %
success at RTG 0.9 there) because the 3-layer shape did not leave the memory plateau
within the 2-core CPU budget in any measured run (see "How the recipe was chosen");
`dtlens build-memorydt --architecture seed` builds the 3-layer one with the same recipe.
"""


_NO_CURRICULUM = "No curriculum: every step samples the whole training split."


def _curriculum_phases(tc: TrainConfig) -> str:
    """``**Curriculum** (...): steps a-b: ...; ...`` (no final full stop)."""
    parts, start = [], 0
    for phase in tc.curriculum:
        groups = "all episodes" if phase.groups is None else ", ".join(phase.groups)
        replay = (
            f", then replayed as {phase.replay:.0%} of every later batch" if phase.replay else ""
        )
        parts.append(
            f"steps {start}-{phase.until_step}: {groups}, window end fraction "
            f"{phase.window_end_fraction:g}{replay}"
        )
        start = phase.until_step
    parts.append(
        f"steps {start}-{tc.total_steps}: all training episodes, window end fraction "
        f"{tc.window_end_fraction:g}"
    )
    return "**Curriculum** (`TrainConfig.curriculum`): " + "; ".join(parts)


def _curriculum_paragraph(tc: TrainConfig) -> str:
    """The curriculum's phases and why the MemoryDT's recipe has them."""
    if not tc.curriculum:
        return _NO_CURRICULUM
    return (
        _curriculum_phases(tc) + ". The first "
        "phase shows the memory decision in every window (temperature-1 episodes reach the "
        "decision square while the first observation is still in the 9-step context; a "
        "window ending at the episode's end holds that decision), which breaks the plateau; "
        "the whole mix then brings back the RTG conditioning, and the replayed share keeps "
        "the memory decision in the data. With weight decay 0.3 the memory learned in the "
        "first phase was erased after the switch, with or without the replay (runs O2-O4 "
        "below); with 0.01 it held (O5). Whether the replay is still needed at 0.01 was not "
        "measured."
    )


def _schedule(tc: TrainConfig) -> str:
    if tc.lr_cycles == 1:
        return "cosine"
    return f"cosine with {tc.lr_cycles} warm restarts"


def _dynamics_section(dynamics: Dynamics | None, run_dir: str | Path, success: str) -> str:
    """``## How it learned to remember``: the recompute command names ``run_dir/train``;
    ``success`` names the success measure (``"Greedy success at RTG 0.9"``)."""
    if dynamics is None:
        return ""
    story = dynamics.story()
    moved = ", ".join(
        f"{name} at step {step}" if step is not None else f"{name} never"
        for name, step in story["moved_at"].items()
    )
    broke = story["plateau_broke_at"]
    return f"""
## How it learned to remember

`dynamics.json` holds the progress measures at {len(dynamics.steps)} checkpoints (steps
{dynamics.steps[0]}-{dynamics.steps[-1]}; recompute with `dtlens dynamics --run-dir
{(Path(run_dir) / "train").as_posix()}`). {success} stays >= 95 % from step
{broke if broke is not None else "(never)"}. Each measure left the plateau (stayed past
its threshold) at: {moved}. First to move: {", ".join(story["first_to_move"]) or "none"}.
{_at_start(story)}"""


def _at_start(story: dict[str, Any]) -> str:
    if not story["past_at_start"]:
        return ""
    return (
        f"Already past their thresholds in the initial weights (so uninformative): "
        f"{', '.join(story['past_at_start'])}.\n"
    )


def _mlp(cfg: DTConfig) -> str:
    return f"gated {cfg.act_fn}" if cfg.gated_mlp else cfg.act_fn
