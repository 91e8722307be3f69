"""``dtlens collect``: play an agent in MiniGrid and save its episodes as demonstrations.

One call of :func:`dtlens.data.collect.collect_to_file`. ``--out`` is checked before
any episode is played (writable, not a directory, and not an existing file unless
``--append`` or ``--overwrite``). The file is written once, atomically, when collection
is done: Ctrl+C while collecting exits with code 130 and one line saying that nothing
was written and ``--out`` is as it was.

Example:
    $ dtlens collect --temp 1:8000 --temp 5:16000 --out runs/demos.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dtlens.training.ppo_config import MEMORY_ENV_ID

__all__ = ["add_parser", "format_summary", "resume_hint", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the subcommand.

    Examples:
        >>> import argparse
        >>> sub = argparse.ArgumentParser().add_subparsers()
        >>> add_parser(sub).parse_args(["--temp", "1:10", "--out", "d.npz"]).temp
        ['1:10']
    """
    parser = subparsers.add_parser(
        "collect",
        help="play an agent in MiniGrid and save its episodes as demonstrations (.npz)",
        description=(
            "Play an agent in many envs at once, sampling its actions at the given "
            "temperatures, and save the episodes (raw observations, actions, rewards) as a "
            "demonstrations .npz file; then print outcome counts per sampling group. "
            "The seed's mix: --temp 1:8000 --temp 5:16000."
        ),
    )
    parser.add_argument(
        "--agent",
        default="planner",
        help="'planner' (exact Boltzmann planner, default), an original-project PPO LSTM "
        ".pt file, or a dtlens LSTM agent directory",
    )
    parser.add_argument(
        "--temp",
        action="append",
        required=True,
        metavar="T:N",
        help="sampling group TEMPERATURE:N_EPISODES, e.g. 1:8000; also greedy:N, topk3:N, "
        "topk3@2:N; repeat for several groups (collected in order)",
    )
    parser.add_argument("--env", default=MEMORY_ENV_ID, help="MiniGrid env id")
    parser.add_argument("--max-steps", type=int, default=50, help="episode length limit")
    parser.add_argument("--out", required=True, type=Path, help="the .npz file to write")
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--append", action="store_true", help="extend the existing --out file (must exist)"
    )
    group.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument("--seed", type=int, default=0, help="root seed of all episodes")
    parser.add_argument("--n-envs", type=int, default=16, help="envs stepped together")
    parser.add_argument(
        "--planner-scale",
        type=float,
        default=None,
        help="planner only: multiply its logits (sampling at T with scale c = at T/c); "
        "default 1 = logits in units of one step's reward",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def format_summary(summary: dict[str, Any]) -> str:
    """A fixed-width table of outcome fractions (wrong = wrong target) and lengths, per
    sampling group and in total.

    Examples:
        >>> print(format_summary({"n_episodes": 0, "success_fraction": 0, "failure_fraction": 0,
        ...     "truncated_fraction": 0, "mean_return": 0, "length": {"mean": 0}}))
        group                    episodes  success   wrong  truncated  mean len  return
        all                             0     0.0%    0.0%       0.0%       0.0   0.000
    """
    header = (
        f"{'group':<24} {'episodes':>8} {'success':>8} {'wrong':>7} {'truncated':>10} "
        f"{'mean len':>9} {'return':>7}"
    )
    rows = [header]
    for label, s in [*summary.get("groups", {}).items(), ("all", summary)]:
        rows.append(
            f"{label:<24} {s['n_episodes']:>8} {s['success_fraction']:>8.1%} "
            f"{s['failure_fraction']:>7.1%} {s['truncated_fraction']:>10.1%} "
            f"{s['length']['mean']:>9.1f} {s['mean_return']:>7.3f}"
        )
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    """Collect into ``--out`` (one library call), print the summary."""
    from dtlens.data.collect import collect_to_file

    result = collect_to_file(
        args.agent,
        args.out,
        args.temp,
        env_id=args.env,
        max_steps=args.max_steps,
        n_envs=args.n_envs,
        seed=args.seed,
        append=args.append,
        overwrite=args.overwrite,
        planner_scale=args.planner_scale,
        show_progress=not args.no_progress,
    )
    demos, n_new, seconds = result
    args.episodes_written = demos.n_episodes
    print(format_summary(demos.summary()))
    print(
        f"wrote {demos.n_episodes} episodes ({demos.n_steps} steps) to {args.out}; "
        f"collected {n_new} in {seconds:.1f} s ({1000 * seconds / n_new:.1f} s per 1000 episodes)"
    )
    return 0


def resume_hint(args: argparse.Namespace) -> str:
    """After Ctrl+C: what is in ``--out`` (the file is written only when collection is done).

    Examples:
        >>> resume_hint(argparse.Namespace(out=Path("/nonexistent/d.npz"), append=False))
        'no episode was written and no partial file was left (/nonexistent/d.npz was not created); rerun the same command'
    """  # noqa: E501
    written = getattr(args, "episodes_written", None)
    if written is not None:
        return f"after {args.out} was written ({written} episodes, complete)"
    state = "is unchanged" if Path(args.out).exists() else "was not created"
    return (
        f"no episode was written and no partial file was left ({args.out} {state}); "
        "rerun the same command"
    )
