"""``dtlens build-memorydt``: rebuild the shipped MemoryDT end to end.

The recipe of :mod:`dtlens.training.recipe`: collect planner demonstrations -> train
with the curriculum (checkpoints every 25 steps to 1000, then every 250) -> calibrate
(greedy, every RTG 0, 0.1, ..., 1.0; the bar also with mask-padded contexts) -> measure
the training dynamics over the checkpoints -> write the checkpoint (``config.json`` +
``model.safetensors``), ``calibration.json``, ``dynamics.json`` and ``MODEL_CARD.md``
into ``--out``. Intermediate files (demonstrations, training checkpoints) go to
``--run-dir`` (default ``runs/memorydt``, git-ignored); an interrupted build picks up
the saved demonstrations and resumes training from its last checkpoint.

Example:
    $ dtlens build-memorydt --out dtlens/pretrained/memorydt
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from dtlens.data.agents.planner import BoltzmannPlanner
from dtlens.data.collect import collect_demonstrations
from dtlens.data.demonstrations import Demonstrations
from dtlens.env import SCENARIOS
from dtlens.errors import CheckpointError
from dtlens.files import check_writable, write_text_atomic
from dtlens.model.checkpoint import save
from dtlens.training.calibration import CalibrationResult, calibration_curve
from dtlens.training.config import TrainConfig
from dtlens.training.dynamics import DYNAMICS_FILE, training_dynamics
from dtlens.training.model_card import rebuild_command, render_model_card
from dtlens.training.pipeline import make_samplers, train_on_demonstrations
from dtlens.training.progress import (
    DecisionData,
    make_progress_evaluator,
    success_by_layout,
)
from dtlens.training.recipe import MEMORYDT_RECIPE, RECIPES, Recipe
from dtlens.training.trainer import STATE_JSON, Trainer, TrainHistory, latest_checkpoint

__all__ = ["add_parser", "resume_hint", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the subcommand.

    Example:
        >>> sub = argparse.ArgumentParser().add_subparsers()
        >>> add_parser(sub).parse_args([]).out
        PosixPath('dtlens/pretrained/memorydt')
    """
    parser = subparsers.add_parser(
        "build-memorydt",
        help="rebuild the shipped MemoryDT: collect, train (curriculum), calibrate, dynamics",
        description=(
            "Collect the planner demonstrations, train a MemoryDT on them with the recipe's "
            "curriculum (checkpoints in --run-dir), measure its RTG calibration and its "
            "training dynamics, and write the checkpoint, calibration.json, dynamics.json "
            "and MODEL_CARD.md into --out. Defaults are the shipped model's recipe; an "
            "interrupted build resumes when run again."
        ),
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("dtlens/pretrained/memorydt"),
        help="where the model, calibration.json and MODEL_CARD.md go",
    )
    parser.add_argument(
        "--architecture",
        choices=sorted(RECIPES),
        default="original",
        help=(
            "model shape: 'original' (2 layers, d_model 128, gated ReLU MLP; the shipped "
            "model) or 'seed' (the seed post's 3 layers, d_model 256, GELU)"
        ),
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=Path("runs/memorydt"),
        help="intermediate files: demos.npz, training checkpoints (step_k/)",
    )
    parser.add_argument(
        "--demos",
        type=Path,
        default=None,
        help="use this demonstrations file instead of collecting",
    )
    parser.add_argument(
        "--total-steps",
        type=int,
        default=None,
        help=f"training steps (recipe: {MEMORYDT_RECIPE.train.total_steps})",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"batch size (recipe: {MEMORYDT_RECIPE.train.batch_size})",
    )
    parser.add_argument("--device", default=None, help="training device (recipe: cpu)")
    parser.add_argument(
        "--seed", type=int, default=None, help="model and training seed (recipe: 0)"
    )
    parser.add_argument(
        "--calibration-episodes",
        type=int,
        default=None,
        help=f"episodes per RTG (recipe: {MEMORYDT_RECIPE.calibration_episodes})",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's; 1 is faster on a busy machine)",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="ignore demos and checkpoints already in --run-dir"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def run(args: argparse.Namespace) -> int:
    """Collect -> train -> calibrate -> write; exit code 1 if the calibration misses its bar."""
    recipe = _recipe_from_args(args)
    check_writable(args.run_dir, "dir", "--run-dir")
    check_writable(args.out, "dir", "--out")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    run_dir: Path = args.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    show = not args.no_progress
    timings: dict[str, float] = {}

    start = time.perf_counter()
    demos, demos_path = _demonstrations(recipe, args.demos, run_dir, args.fresh, show)
    timings["collect_s"] = time.perf_counter() - start
    summary = demos.summary()
    print(_outcome_line(summary))

    start = time.perf_counter()
    decisions = _decision_data(recipe, demos)
    trainer, history = _train(
        recipe, demos, demos_path, decisions, run_dir / "train", args.fresh, show
    )
    timings["train_s"] = time.perf_counter() - start

    start = time.perf_counter()
    calibration = calibration_curve(
        trainer.model,
        rtgs=recipe.calibration_rtgs,
        episodes_per_rtg=recipe.calibration_episodes,
        env_id=recipe.env_id,
        max_steps=recipe.max_steps,
        seed=0,
        layouts="balanced",
        show_progress=show,
    )
    padded = {
        rtg: success_by_layout(trainer.model, rtg, padding="masked", max_steps=recipe.max_steps)
        for rtg in (0.9, 0.0)
    }
    timings["calibrate_s"] = time.perf_counter() - start
    print(calibration.table())

    start = time.perf_counter()
    dynamics = training_dynamics(run_dir / "train", decisions, show_progress=show)
    timings["dynamics_s"] = time.perf_counter() - start

    verdict = _verdict(recipe, calibration, padded)
    out: Path = args.out
    meta = {
        "name": "memorydt",
        "env": {"env_id": recipe.env_id, "max_steps": recipe.max_steps},
        "recipe": recipe.to_dict(),
        "data": {"file": str(demos_path), "header": demos.header, "summary": summary},
        "training": {
            "step": trainer.step,
            "train_loss": history.train[-1]["train/loss"],
            "val_loss": history.val[-1]["val/loss"] if history.val else None,
        },
        "calibration": {
            "success_at_0.9": verdict["high"],
            "success_at_0": verdict["low"],
            "success_at_0.9_by_layout": verdict["high_by_layout"],
            "masked_padding": verdict["masked"],
            "passed": verdict["passed"],
        },
        "build_seconds": {k: round(v, 1) for k, v in timings.items()},
        "torch_threads": torch.get_num_threads(),
        "rebuild": rebuild_command(recipe),
    }
    save(trainer.model, out, metadata=meta)
    write_text_atomic(out / "calibration.json", calibration.to_json(indent=None) + "\n")
    dynamics.save(out / DYNAMICS_FILE)
    card = render_model_card(
        recipe, summary, trainer, history, calibration, verdict, timings, dynamics
    )
    write_text_atomic(out / "MODEL_CARD.md", card)
    print(
        f"wrote {out}/ (config.json, model.safetensors, calibration.json, dynamics.json, "
        "MODEL_CARD.md)"
    )
    print(
        f"calibration requirement {'PASSED' if verdict['passed'] else 'FAILED'}: success "
        f"{verdict['high']:.3f} at RTG 0.9 (>= {recipe.required_success_high} in each layout, "
        f"worst {min(verdict['high_by_layout'].values()):.3f}), {verdict['low']:.3f} at RTG 0 "
        f"(<= {recipe.required_success_low}); mask-padded contexts "
        f"{'pass' if verdict['masked']['passed'] else 'FAIL'}"
    )
    return 0 if verdict["passed"] else 1


def _decision_data(recipe: Recipe, demos: Demonstrations) -> DecisionData:
    """The held-out decision-square windows of the run's validation split."""
    _, val = make_samplers(demos, recipe.train)
    return DecisionData.from_demonstrations(demos, val)


# --------------------------------------------------------------------- stages
def _recipe_from_args(args: argparse.Namespace) -> Recipe:
    base = RECIPES[getattr(args, "architecture", "original")]
    train = base.train
    changes: dict[str, Any] = {"run_dir": str(args.run_dir / "train")}
    if args.total_steps is not None:
        changes["total_steps"] = args.total_steps
        changes["warmup_steps"] = min(train.warmup_steps, args.total_steps)
        changes["curriculum"] = _scaled_curriculum(train, args.total_steps)
        scale = args.total_steps / train.total_steps
        changes["checkpoint_steps"] = sorted(
            {round(k * scale) for k in train.checkpoint_steps} & set(range(1, args.total_steps))
        )
    if args.batch_size is not None:
        changes["batch_size"] = args.batch_size
    if args.device is not None:
        changes["device"] = args.device
    if getattr(args, "seed", None) is not None:
        changes["seed"] = args.seed
        changes["model"] = train.model.to_dict() | {"seed": args.seed}
    recipe = replace(base, train=TrainConfig.from_dict(train.to_dict() | changes))
    if args.calibration_episodes is not None:
        recipe = replace(recipe, calibration_episodes=args.calibration_episodes)
    return recipe


def _scaled_curriculum(train: TrainConfig, total_steps: int) -> list[dict[str, Any]]:
    """The recipe's curriculum with every phase end scaled to ``total_steps``."""
    scale = total_steps / train.total_steps
    phases, last = [], 0
    for phase in train.curriculum:
        until = max(last + 1, round(phase.until_step * scale))
        if until > total_steps:
            break
        phases.append(phase.to_dict() | {"until_step": until})
        last = until
    return phases


def _demonstrations(
    recipe: Recipe, given: Path | None, run_dir: Path, fresh: bool, show: bool
) -> tuple[Demonstrations, Path]:
    if given is not None:
        return Demonstrations.load(given), given
    path = run_dir / "demos.npz"
    stamp = run_dir / "demos.recipe.json"
    wanted = {
        k: recipe.to_dict()[k]
        for k in ("sampling", "planner_scale", "collect_seed", "env_id", "max_steps")
    }
    if not fresh and path.exists() and stamp.exists() and json.loads(stamp.read_text()) == wanted:
        print(f"using the demonstrations already collected in {path}")
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
) -> tuple[Trainer, TrainHistory]:
    resume = not fresh and any(train_dir.glob(f"step_*/{STATE_JSON}"))
    if fresh and train_dir.exists():
        for old in train_dir.glob("step_*"):
            _remove_tree(old)
        (train_dir / "metrics.jsonl").unlink(missing_ok=True)
    if resume:
        print(f"resuming training from the latest checkpoint in {train_dir}")
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


def _verdict(
    recipe: Recipe, calibration: CalibrationResult, masked: dict[float, dict[str, float]]
) -> dict[str, Any]:
    """The bar: success >= required in EACH layout at RTG 0.9 and <= required at RTG 0,
    with unpadded contexts (the calibration) and with mask-padded ones (``masked``)."""
    i = calibration.at(0.9)
    n = len(SCENARIOS)
    by_layout = {
        s.name: float(calibration.success[i, j::n].mean()) for j, s in enumerate(SCENARIOS)
    }
    high = float(calibration.success_rate[i])
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


def _outcome_line(summary: dict[str, Any]) -> str:
    return (
        f"{summary['n_episodes']} episodes: {summary['success_fraction']:.1%} success, "
        f"{summary['failure_fraction']:.1%} wrong target, "
        f"{summary['truncated_fraction']:.1%} truncated, mean length "
        f"{summary['length']['mean']:.1f}"
    )


def resume_hint(args: argparse.Namespace) -> str | None:
    """After Ctrl+C: the last training checkpoint, and that rerunning resumes from it.

    Example:
        >>> resume_hint(argparse.Namespace(run_dir=Path("/nonexistent")))
        'no training checkpoint was written yet; rerun the same command to start again'
    """
    try:
        last = latest_checkpoint(Path(args.run_dir) / "train")
    except CheckpointError:
        return "no training checkpoint was written yet; rerun the same command to start again"
    return f"last checkpoint {last}; rerun the same command to resume from it"
