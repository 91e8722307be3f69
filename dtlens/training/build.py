"""Build the shipped MemoryDT end to end from a recipe (``dtlens build-memorydt``).

:func:`build_memorydt` runs the recipe of :mod:`dtlens.training.recipe`: collect planner
demonstrations -> train with the curriculum (checkpoints every 25 steps to 1000, then
every 250) -> calibrate (greedy, every RTG 0, 0.1, ..., 1.0; the bar also with
mask-padded contexts) -> measure the training dynamics over the checkpoints -> write
the checkpoint (``config.json`` + ``model.safetensors``), ``calibration.json``,
``dynamics.json`` and ``MODEL_CARD.md`` into ``out``. Intermediate files
(demonstrations, training checkpoints) go to ``run_dir``; an interrupted build picks
up the saved demonstrations and resumes training from its last checkpoint.
:func:`calibration_verdict` is the bar the model must meet. A recipe whose model is a
behavioural clone (``customise_recipe(..., model_type="clone")``) trains on the same
demonstrations; it has no RTG, so its bar is :func:`clone_verdict` (greedy success per
layout) and its card (:func:`~dtlens.training.model_card.render_clone_card`) makes no
RTG claims.

Example:
    >>> from dtlens.training.recipe import MEMORYDT_RECIPE, customise_recipe
    >>> recipe = customise_recipe(MEMORYDT_RECIPE, "runs/memorydt")
    >>> result = build_memorydt(recipe, "dtlens/pretrained/memorydt", "runs/memorydt")  # doctest: +SKIP
    >>> result.passed  # doctest: +SKIP
    True
"""  # noqa: E501

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dtlens.data.agents.planner import BoltzmannPlanner
from dtlens.data.collect import collect_demonstrations
from dtlens.data.demonstrations import Demonstrations
from dtlens.files import check_writable, write_text_atomic
from dtlens.model.checkpoint import save
from dtlens.training.calibration import CalibrationResult, calibration_curve
from dtlens.training.dynamics import DYNAMICS_FILE, Dynamics, training_dynamics
from dtlens.training.model_card import rebuild_command, render_clone_card, render_model_card
from dtlens.training.pipeline import make_samplers, train_on_demonstrations
from dtlens.training.progress import DecisionData, make_progress_evaluator, success_by_layout
from dtlens.training.recipe import Recipe
from dtlens.training.run_dirs import STATE_JSON
from dtlens.training.trainer import Trainer, TrainHistory

__all__ = ["BuildResult", "build_memorydt", "calibration_verdict", "clone_verdict"]

#: the RTG a clone's single calibration row is labelled with (the clone ignores it)
CLONE_RTG = 0.9

#: the files a build writes into its output directory
BUILD_FILES = (
    "config.json",
    "model.safetensors",
    "calibration.json",
    DYNAMICS_FILE,
    "MODEL_CARD.md",
)


@dataclass
class BuildResult:
    """What :func:`build_memorydt` made.

    Attributes:
        out: the model directory (checkpoint, calibration, dynamics, model card).
        trainer: the trainer (its model is the built model).
        history: the training history.
        calibration: the calibration curve (unpadded contexts).
        dynamics: the progress measures over the run's checkpoints.
        verdict: :func:`calibration_verdict`'s dict (:func:`clone_verdict`'s for a
            behavioural clone).
        timings: seconds per stage (``collect_s``, ``train_s``, ``calibrate_s``,
            ``dynamics_s``).
    """

    out: Path
    trainer: Trainer
    history: TrainHistory
    calibration: CalibrationResult
    dynamics: Dynamics
    verdict: dict[str, Any]
    timings: dict[str, float]

    @property
    def passed(self) -> bool:
        """Whether the model meets the recipe's calibration bar."""
        return bool(self.verdict["passed"])


def build_memorydt(
    recipe: Recipe,
    out: str | Path,
    run_dir: str | Path,
    *,
    demos: str | Path | None = None,
    fresh: bool = False,
    threads: int | None = None,
    show_progress: bool = True,
    log: Callable[[str], Any] = print,
) -> BuildResult:
    """Collect -> train -> calibrate -> dynamics -> write the model and its card.

    Args:
        recipe: what to build (:func:`dtlens.training.recipe.customise_recipe` puts its
            training checkpoints in ``run_dir/train``).
        out: the model directory to write.
        run_dir: intermediate files (``demos.npz``, training checkpoints).
        demos: use this demonstrations file instead of collecting.
        fresh: ignore demonstrations and checkpoints already in ``run_dir``.
        threads: torch CPU threads (None: torch's setting).
        show_progress: progress bars.
        log: where the progress lines go (the outcome counts, the calibration table,
            what was written, the verdict).

    Returns:
        The result; ``result.passed`` says whether the calibration bar was met (the
        files are written either way).

    Raises:
        OutputPathError: ``run_dir`` or ``out`` cannot be written (checked first).
    """
    run_dir, out = Path(run_dir), Path(out)
    check_writable(run_dir, "dir", "--run-dir")
    check_writable(out, "dir", "--out")
    if threads is not None:
        torch.set_num_threads(threads)
    run_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    data, demos_path = _demonstrations(recipe, demos, run_dir, fresh, show_progress, log)
    timings["collect_s"] = time.perf_counter() - start
    summary = data.summary()
    log(_outcome_line(summary))

    start = time.perf_counter()
    _, val = make_samplers(data, recipe.train)
    decisions = DecisionData.from_demonstrations(data, val)
    trainer, history = _train(
        recipe, data, demos_path, decisions, run_dir / "train", fresh, show_progress, log
    )
    timings["train_s"] = time.perf_counter() - start

    if recipe.train.model.model_type == "clone":
        return _finish_clone(
            recipe,
            out,
            data,
            demos_path,
            trainer,
            history,
            decisions,
            timings,
            run_dir,
            show_progress,
            log,
        )

    start = time.perf_counter()
    calibration = calibration_curve(
        trainer.model,
        rtgs=recipe.calibration_rtgs,
        episodes_per_rtg=recipe.calibration_episodes,
        env_id=recipe.env_id,
        max_steps=recipe.max_steps,
        seed=0,
        layouts="balanced",
        show_progress=show_progress,
    )
    padded = {
        rtg: success_by_layout(trainer.model, rtg, padding="masked", max_steps=recipe.max_steps)
        for rtg in (0.9, 0.0)
    }
    timings["calibrate_s"] = time.perf_counter() - start
    log(calibration.table())

    start = time.perf_counter()
    dynamics = training_dynamics(run_dir / "train", decisions, show_progress=show_progress)
    timings["dynamics_s"] = time.perf_counter() - start

    verdict = calibration_verdict(recipe, calibration, padded)
    meta = _metadata(
        "memorydt", recipe, demos_path, data, summary, trainer, history, timings,
        {
            "success_at_0.9": verdict["high"],
            "success_at_0": verdict["low"],
            "success_at_0.9_by_layout": verdict["high_by_layout"],
            "masked_padding": verdict["masked"],
            "passed": verdict["passed"],
        },
    )  # fmt: skip
    save(trainer.model, out, metadata=meta)
    write_text_atomic(out / "calibration.json", calibration.to_json(indent=None) + "\n")
    dynamics.save(out / DYNAMICS_FILE)
    card = render_model_card(
        recipe, summary, trainer, history, calibration, verdict, timings, dynamics, run_dir=run_dir
    )
    write_text_atomic(out / "MODEL_CARD.md", card)
    log(f"wrote {out}/ ({', '.join(BUILD_FILES)})")
    log(
        f"calibration requirement {'PASSED' if verdict['passed'] else 'FAILED'}: success "
        f"{verdict['high']:.3f} at RTG 0.9 (>= {recipe.required_success_high} in each layout, "
        f"worst {min(verdict['high_by_layout'].values()):.3f}), {verdict['low']:.3f} at RTG 0 "
        f"(<= {recipe.required_success_low}); mask-padded contexts "
        f"{'pass' if verdict['masked']['passed'] else 'FAIL'}"
    )
    return BuildResult(out, trainer, history, calibration, dynamics, verdict, timings)


def calibration_verdict(
    recipe: Recipe, calibration: CalibrationResult, masked: dict[float, dict[str, float]]
) -> dict[str, Any]:
    """The bar: success >= required in EACH layout at RTG 0.9 and <= required at RTG 0,
    with unpadded contexts (``calibration``) and with mask-padded ones (``masked``:
    ``{rtg: {layout: success}}`` at RTGs 0.9 and 0).

    Returns:
        ``{"high", "low", "high_by_layout", "masked": {..., "passed"}, "passed"}``.
    """
    by_layout = calibration.success_by_layout(0.9)
    high = float(calibration.success_rate[calibration.at(0.9)])
    low = float(calibration.success_rate[calibration.at(0.0)])
    masked_high, masked_low = masked[0.9], masked[0.0]
    masked_ok = (
        min(masked_high.values()) >= recipe.required_success_high
        and sum(masked_low.values()) / len(masked_low) <= recipe.required_success_low
    )
    passed = (
        min(by_layout.values()) >= recipe.required_success_high
        and low <= recipe.required_success_low
        and masked_ok
    )
    return {
        "high": high,
        "low": low,
        "high_by_layout": by_layout,
        "masked": {"success_at_0.9": masked_high, "success_at_0": masked_low, "passed": masked_ok},
        "passed": passed,
    }


def clone_verdict(
    recipe: Recipe, calibration: CalibrationResult, masked: dict[str, float]
) -> dict[str, Any]:
    """A behavioural clone's bar: greedy success >= ``required_success_high`` in EACH
    layout, with unpadded contexts (``calibration``, one row: a clone reads no RTG) and
    mask-padded ones (``masked``: ``{layout: success}``). There is no low-RTG bar: a
    clone cannot be asked to fail.

    Returns:
        ``{"success", "by_layout", "masked": {"success", "passed"}, "passed"}``.
    """
    by_layout = calibration.success_by_layout(float(calibration.rtgs[0]))
    masked_ok = min(masked.values()) >= recipe.required_success_high
    return {
        "success": float(calibration.success_rate[0]),
        "by_layout": by_layout,
        "masked": {"success": masked, "passed": masked_ok},
        "passed": min(by_layout.values()) >= recipe.required_success_high and masked_ok,
    }


def _finish_clone(
    recipe: Recipe,
    out: Path,
    data: Demonstrations,
    demos_path: Path,
    trainer: Trainer,
    history: TrainHistory,
    decisions: DecisionData,
    timings: dict[str, float],
    run_dir: Path,
    show_progress: bool,
    log: Callable[[str], Any],
) -> BuildResult:
    """Calibrate, measure and write a behavioural clone: no RTG curve (a clone reads no
    RTG), greedy success per layout instead."""
    start = time.perf_counter()
    calibration = calibration_curve(
        trainer.model,
        rtgs=[CLONE_RTG],
        episodes_per_rtg=recipe.calibration_episodes,
        env_id=recipe.env_id,
        max_steps=recipe.max_steps,
        seed=0,
        layouts="balanced",
        show_progress=show_progress,
    )
    masked = success_by_layout(
        trainer.model, CLONE_RTG, padding="masked", max_steps=recipe.max_steps
    )
    timings["calibrate_s"] = time.perf_counter() - start
    start = time.perf_counter()
    dynamics = training_dynamics(run_dir / "train", decisions, show_progress=show_progress)
    timings["dynamics_s"] = time.perf_counter() - start
    verdict = clone_verdict(recipe, calibration, masked)
    meta = _metadata(
        "memorydt-clone", recipe, demos_path, data, data.summary(), trainer, history, timings,
        {
            "success": verdict["success"],
            "success_by_layout": verdict["by_layout"],
            "masked_padding": verdict["masked"],
            "passed": verdict["passed"],
        },
    )  # fmt: skip
    save(trainer.model, out, metadata=meta)
    write_text_atomic(out / "calibration.json", calibration.to_json(indent=None) + "\n")
    dynamics.save(out / DYNAMICS_FILE)
    card = render_clone_card(
        recipe, data.summary(), trainer, history, verdict, timings, dynamics, run_dir=run_dir
    )
    write_text_atomic(out / "MODEL_CARD.md", card)
    log(f"wrote {out}/ ({', '.join(BUILD_FILES)})")
    log(
        f"clone requirement {'PASSED' if verdict['passed'] else 'FAILED'}: greedy success "
        f"{verdict['success']:.3f} (>= {recipe.required_success_high} in each layout, worst "
        f"{min(verdict['by_layout'].values()):.3f}); mask-padded contexts "
        f"{'pass' if verdict['masked']['passed'] else 'FAIL'}"
    )
    return BuildResult(out, trainer, history, calibration, dynamics, verdict, timings)


# --------------------------------------------------------------------- stages
def _metadata(
    name: str,
    recipe: Recipe,
    demos_path: Path,
    data: Demonstrations,
    summary: dict[str, Any],
    trainer: Trainer,
    history: TrainHistory,
    timings: dict[str, float],
    calibration: dict[str, Any],
) -> dict[str, Any]:
    """The shipped checkpoint's ``config.json`` metadata (DT and clone builds alike)."""
    return {
        "name": name,
        "env": {"env_id": recipe.env_id, "max_steps": recipe.max_steps},
        "recipe": recipe.to_dict(),
        "data": {"file": str(demos_path), "header": data.header, "summary": summary},
        "training": {
            "step": trainer.step,
            "train_loss": history.train[-1]["train/loss"],
            "val_loss": history.val[-1]["val/loss"] if history.val else None,
        },
        "calibration": calibration,
        "build_seconds": {k: round(v, 1) for k, v in timings.items()},
        "torch_threads": torch.get_num_threads(),
        "rebuild": rebuild_command(recipe),
    }


def _demonstrations(
    recipe: Recipe,
    given: str | Path | None,
    run_dir: Path,
    fresh: bool,
    show: bool,
    log: Callable[[str], Any],
) -> tuple[Demonstrations, Path]:
    if given is not None:
        return Demonstrations.load(given), Path(given)
    path = run_dir / "demos.npz"
    stamp = run_dir / "demos.recipe.json"
    wanted = {
        k: recipe.to_dict()[k]
        for k in ("sampling", "planner_scale", "collect_seed", "env_id", "max_steps")
    }
    if not fresh and path.exists() and stamp.exists() and json.loads(stamp.read_text()) == wanted:
        log(f"using the demonstrations already collected in {path}")
        return Demonstrations.load(path), path
    demos = collect_demonstrations(
        BoltzmannPlanner(logit_scale=recipe.planner_scale),
        recipe.env_id,
        list(recipe.sampling),
        n_envs=recipe.n_envs,
        max_steps=recipe.max_steps,
        seed=recipe.collect_seed,
        show_progress=show,
        agent_name=f"planner(logit_scale={recipe.planner_scale:g})",
    )
    demos.save(path)
    write_text_atomic(stamp, json.dumps(wanted) + "\n")
    return demos, path


def _train(
    recipe: Recipe,
    demos: Demonstrations,
    demos_path: Path,
    decisions: DecisionData,
    train_dir: Path,
    fresh: bool,
    show: bool,
    log: Callable[[str], Any],
) -> tuple[Trainer, TrainHistory]:
    resume = not fresh and any(train_dir.glob(f"step_*/{STATE_JSON}"))
    if fresh and train_dir.exists():
        for old in train_dir.glob("step_*"):
            _remove_tree(old)
        (train_dir / "metrics.jsonl").unlink(missing_ok=True)
    if resume:
        log(f"resuming training from the latest checkpoint in {train_dir}")
    evaluator = make_progress_evaluator(decisions)
    return train_on_demonstrations(
        recipe.train,
        demos,
        resume=resume,
        evaluator=evaluator,
        show_progress=show,
        data_file=demos_path,
    )


def _remove_tree(path: Path) -> None:
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def _outcome_line(summary: dict[str, Any]) -> str:
    return (
        f"{summary['n_episodes']} episodes: {summary['success_fraction']:.1%} success, "
        f"{summary['failure_fraction']:.1%} wrong target, "
        f"{summary['truncated_fraction']:.1%} truncated, mean length "
        f"{summary['length']['mean']:.1f}"
    )
