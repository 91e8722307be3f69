"""Benchmark: how fast ``dtlens --help``, every ``dtlens <command> --help`` and an
argument error answer, against ``python -c pass`` in the same run.

Run ``python benchmarks/bench_cli_startup.py`` (about a minute). Each command runs
``--runs`` times (default 7) as a fresh subprocess (``python -m dtlens.cli ...``, the
console script's code path without its wrapper); the table gives the median and the
fastest wall time of each, and the median less the interpreter's own start-up
(``python -c pass``, measured in the same run, interleaved with the commands so a
busy machine slows both alike). ``import dtlens`` is timed too. Results, with the
machine's details, go to ``benchmarks/results/cli_startup.json``.

``--source DIR`` times another checkout of dtlens (its ``dtlens`` package first on
``PYTHONPATH``), e.g. an older commit unpacked with ``git archive``, for a
before/after comparison on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "cli_startup.json"
COMMANDS = [
    "report",
    "app",
    "preferences",
    "collect",
    "train",
    "calibrate",
    "train-ppo",
    "build-memorydt",
    "dynamics",
]


def cases() -> dict[str, list[str]]:
    """name -> the python arguments of each timed process."""
    out = {
        "python -c pass": ["-c", "pass"],
        "import dtlens": ["-c", "import dtlens"],
        "dtlens --help": ["-m", "dtlens.cli", "--help"],
    }
    for command in COMMANDS:
        out[f"dtlens {command} --help"] = ["-m", "dtlens.cli", command, "--help"]
    out["dtlens train (argument error)"] = ["-m", "dtlens.cli", "train", "--total-steps", "x"]
    return out


def time_once(args: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs of each command (median)")
    parser.add_argument(
        "--source", type=Path, default=ROOT, help="the dtlens checkout to time (default: this)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(args.source.resolve())}
    check = subprocess.run(
        [sys.executable, "-c", "import dtlens.errors as e; print(e.__file__)"],
        env=env,
        cwd=args.source,
        capture_output=True,
        text=True,
        check=True,
    )
    print(f"timing {Path(check.stdout.strip()).parent.parent} ({args.runs} runs each)")
    todo = cases()
    times: dict[str, list[float]] = {name: [] for name in todo}
    for argv in todo.values():  # warm the file cache
        time_once(argv, env, args.source)
    for _ in range(args.runs):
        for name, argv in todo.items():  # interleaved: load changes hit every command alike
            times[name].append(time_once(argv, env, args.source))
    base = statistics.median(times["python -c pass"])
    rows = {}
    print(f"{'command':<34} {'median s':>9} {'min s':>7} {'- python s':>11}")
    for name, values in times.items():
        median = statistics.median(values)
        rows[name] = {
            "median_s": round(median, 3),
            "min_s": round(min(values), 3),
            "median_minus_python_s": round(median - base, 3),
            "runs_s": [round(v, 3) for v in values],
        }
        print(f"{name:<34} {median:>9.3f} {min(values):>7.3f} {median - base:>11.3f}")
    slowest = max(v["median_s"] for k, v in rows.items() if k.startswith("dtlens"))
    print(f"slowest dtlens command: {slowest:.3f} s median (python itself: {base:.3f} s)")
    record = {
        "benchmark": "cli_startup",
        "source": str(args.source.resolve()),
        "runs": args.runs,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "results": rows,
        "slowest_dtlens_median_s": slowest,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
