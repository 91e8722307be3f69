"""``dtlens train-ppo``: train (or fine-tune) the PPO LSTM demonstrator agent on a MiniGrid env.

``--out`` is checked before any work: it must be writable, and a directory that holds
an earlier run (``final/``, ``update_NNNNNN/``, ``history.json``) needs ``--overwrite``,
which removes that run before training. Ctrl+C exits with code 130 and one line naming
the last saved agent (continue from it with ``--init``).

Example:
    $ dtlens train-ppo --out runs/ppo --total-steps 2000000 --threads 1
"""

from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

from dtlens.data.agents import LSTMAgent, load_lstm_agent, load_original_lstm
from dtlens.data.agents.lstm import AGENT_CONFIG_FILE
from dtlens.errors import OutputPathError
from dtlens.files import check_writable
from dtlens.training.ppo import PPOConfig, train_ppo

__all__ = ["add_parser", "earlier_run", "resume_hint", "run"]

_DEFAULTS = PPOConfig()


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the subcommand.

    Example:
        >>> import argparse
        >>> sub = argparse.ArgumentParser().add_subparsers()
        >>> add_parser(sub).parse_args(["--out", "runs/ppo"]).total_steps
        2000000
    """
    parser = subparsers.add_parser(
        "train-ppo",
        help="train the PPO LSTM demonstrator agent (BabyAI conv + LSTM) on a MiniGrid env",
        description=(
            "Recurrent PPO for the LSTM agent that generates demonstrations. Writes "
            "OUT/final/ (config.json + agent.safetensors), OUT/update_NNNNNN/ every "
            "--checkpoint-every updates, and OUT/history.json (one row per update)."
        ),
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in --out (its final agent, checkpoints and history)",
    )
    parser.add_argument(
        "--env", default=_DEFAULTS.env_id, help=f"MiniGrid env id (default {_DEFAULTS.env_id})"
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        default=_DEFAULTS.max_steps,
        help=f"episode length limit (default {_DEFAULTS.max_steps})",
    )
    parser.add_argument(
        "--init",
        type=Path,
        help="start from this agent: an original project .pt or a dtlens agent directory",
    )
    ints = {
        "total-steps": "environment steps in all",
        "n-envs": "environments stepped together",
        "n-steps": "steps per env per update (a multiple of --recurrence)",
        "recurrence": "steps of backpropagation through the LSTM state",
        "update-epochs": "passes over each segment",
        "n-minibatches": "minibatches per pass",
        "image-dim": "image embedding width of a fresh agent",
        "memory-dim": "LSTM width of a fresh agent",
        "seed": "seeds the fresh agent, envs and sampling",
        "checkpoint-every": "save a checkpoint every k updates (0: only the final one)",
    }
    for flag, text in ints.items():
        default = getattr(_DEFAULTS, flag.replace("-", "_"))
        parser.add_argument(
            f"--{flag}", type=int, default=default, help=f"{text} (default {default})"
        )
    floats = {
        "learning-rate": "Adam step size",
        "gamma": "discount",
        "gae-lambda": "GAE lambda",
        "clip-coef": "PPO ratio clip",
        "ent-coef": "entropy bonus weight",
        "vf-coef": "value loss weight",
        "max-grad-norm": "gradient norm clip",
    }
    for flag, text in floats.items():
        default = getattr(_DEFAULTS, flag.replace("-", "_"))
        parser.add_argument(
            f"--{flag}", type=float, default=default, help=f"{text} (default {default})"
        )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads while training (default: torch's setting; 1 is fastest for "
        "small agents)",
    )
    parser.add_argument(
        "--no-anneal-lr", action="store_true", help="keep the learning rate constant"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def _initial_agent(path: Path | None) -> LSTMAgent | None:
    if path is None:
        return None
    if path.is_dir():
        return load_lstm_agent(path)
    return load_original_lstm(path)


def run(args: argparse.Namespace) -> int:
    """Build the config, train, print a summary line; returns 0.

    Example:
        >>> run(parser.parse_args(["--out", "runs/ppo", "--threads", "1"]))  # doctest: +SKIP
        trained 1953 updates (1999872 steps); last 10 updates: ...
    """
    check_writable(args.out, "dir", "--out")
    earlier = earlier_run(args.out)
    if earlier and not args.overwrite:
        raise OutputPathError(
            f"--out {args.out} already holds a run ({', '.join(p.name for p in earlier[:4])}"
            f"{', ...' if len(earlier) > 4 else ''}); pass --overwrite to replace it, or "
            "choose another --out (to continue from its agent: --init OUT/final)"
        )
    config = PPOConfig(
        env_id=args.env,
        max_steps=args.max_steps,
        total_steps=args.total_steps,
        n_envs=args.n_envs,
        n_steps=args.n_steps,
        recurrence=args.recurrence,
        update_epochs=args.update_epochs,
        n_minibatches=args.n_minibatches,
        learning_rate=args.learning_rate,
        anneal_lr=not args.no_anneal_lr,
        gamma=args.gamma,
        gae_lambda=args.gae_lambda,
        clip_coef=args.clip_coef,
        ent_coef=args.ent_coef,
        vf_coef=args.vf_coef,
        max_grad_norm=args.max_grad_norm,
        image_dim=args.image_dim,
        memory_dim=args.memory_dim,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        progress=not args.no_progress,
        num_threads=args.threads,
    )
    agent = _initial_agent(args.init)
    for path in earlier:  # --overwrite, and the inputs are good: remove the earlier run
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    _, history = train_ppo(config, agent=agent, checkpoint_dir=args.out)
    recent = [s for s in history[-10:] if not math.isnan(s.mean_return)]
    if recent:
        mean_return = sum(s.mean_return for s in recent) / len(recent)
        success = sum(s.success_rate for s in recent) / len(recent)
        summary = (
            f"last {len(recent)} updates: mean return {mean_return:.3f}, success {success:.3f}"
        )
    else:
        summary = "no episode finished in the last updates"
    print(
        f"trained {len(history)} updates ({history[-1].env_steps} steps); {summary}; "
        f"agent saved to {args.out / 'final'}"
    )
    return 0


def earlier_run(out: Path) -> list[Path]:
    """What an earlier run left in ``out``: ``final/``, ``update_NNNNNN/``, ``history.json``.

    Example:
        >>> earlier_run(Path("/nonexistent"))
        []
    """
    out = Path(out)
    if not out.is_dir():
        return []
    found = [p for p in out.iterdir() if p.name == "final" or p.name.startswith("update_")]
    history = out / "history.json"
    return sorted(found) + ([history] if history.exists() else [])


def resume_hint(args: argparse.Namespace) -> str:
    """After Ctrl+C: the last agent saved in ``--out`` and how to continue from it.

    Example:
        >>> resume_hint(argparse.Namespace(out=Path("/nonexistent")))
        'no agent checkpoint was written yet'
    """
    saved = sorted(p for p in Path(args.out).glob("update_*") if (p / AGENT_CONFIG_FILE).is_file())
    if not saved:
        return "no agent checkpoint was written yet"
    return (
        f"last agent checkpoint {saved[-1]}; continue from it with --init {saved[-1]} "
        "and another --out"
    )
