"""Benchmark: how long the test suite takes, and where the time goes.

Runs the README's test command (``python -m pytest -q``, the suite CI runs: every test
but those marked ``slow``) in a subprocess and times it, against ``python -c "import
dtlens, torch, transformer_lens"`` measured in the same run (what every test process
pays before its first test). pytest's JUnit XML gives each test's time; the results
group them by file and list the slowest tests, so a test that grows shows up here
before it makes CI slow.

The goal (the "trustworthy by default" issue): the suite under 10 minutes on 2 cores.
CI (``.ci/run``) also installs the package and builds the docs; this times the tests
alone. On a machine shared with other jobs the time scales with the share of the CPU
the run gets: the load average before and after is recorded with the results.

Usage:
    python benchmarks/bench_test_suite.py                  # the whole suite (~6 min)
    python benchmarks/bench_test_suite.py -- tests/unit    # only these paths/options
    python benchmarks/bench_test_suite.py --out /tmp/suite.json

Results: ``benchmarks/results/test_suite.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "test_suite.json"
GOAL_S = 600.0
IMPORTS = "import dtlens, torch, transformer_lens"


def time_imports() -> float:
    """Wall time of a fresh process importing dtlens, torch and transformer_lens, s."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", IMPORTS], cwd=ROOT, check=True)
    return time.perf_counter() - start


def run_suite(pytest_args: list[str], junit: Path) -> tuple[float, int]:
    """Run pytest with ``pytest_args``; returns (wall time s, exit code)."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += [f"--junitxml={junit}", *pytest_args]
    print("running:", " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, check=False)
    return time.perf_counter() - start, done.returncode


def read_junit(junit: Path) -> dict:
    """Counts, per-file times and the slowest tests from pytest's JUnit XML."""
    root = ET.parse(junit).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        raise RuntimeError(f"{junit} holds no <testsuite>")
    by_file: dict[str, float] = defaultdict(float)
    tests = []
    for case in suite.iter("testcase"):
        seconds = float(case.get("time", 0.0))
        parts = case.get("classname", "").split(".")
        module = [p for p in parts if not p.startswith("Test")]  # drop test classes
        path = "/".join(module) + ".py"
        by_file[path] += seconds
        tests.append((seconds, f"{path}::{case.get('name', '')}"))
    tests.sort(reverse=True)
    return {
        "tests": int(suite.get("tests", 0)),
        "failures": int(suite.get("failures", 0)),
        "errors": int(suite.get("errors", 0)),
        "skipped": int(suite.get("skipped", 0)),
        "pytest_time_s": round(float(suite.get("time", 0.0)), 1),
        "slowest_tests": [{"test": n, "s": round(s, 2)} for s, n in tests[:20]],
        "slowest_files": [
            {"file": f, "s": round(s, 1)}
            for f, s in sorted(by_file.items(), key=lambda kv: -kv[1])[:15]
        ],
        "share_of_slowest_10_tests": round(
            sum(s for s, _ in tests[:10]) / max(1e-9, sum(s for s, _ in tests)), 3
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("pytest_args", nargs="*", help="after --: paths/options for pytest")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    imports_s = time_imports()
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        wall_s, code = run_suite(args.pytest_args, junit)
        details = read_junit(junit)
    load_after = os.getloadavg()
    record = {
        "benchmark": "test_suite",
        "command": "python -m pytest -q " + " ".join(args.pytest_args),
        "exit_code": code,
        "wall_s": round(wall_s, 1),
        "wall_min": round(wall_s / 60, 2),
        "goal_s": GOAL_S,
        "ratio_to_goal": round(wall_s / GOAL_S, 3),
        "fresh_process_imports_s": round(imports_s, 2),
        **details,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(
        f"suite: {wall_s / 60:.1f} min ({wall_s / GOAL_S:.0%} of the 10 min goal), "
        f"{details['tests']} tests, {details['skipped']} skipped, exit {code}; "
        f"imports {imports_s:.1f} s; load {load_before[0]:.1f} -> {load_after[0]:.1f}"
    )
    for row in details["slowest_tests"][:10]:
        print(f"  {row['s']:7.1f} s  {row['test']}")
    print(f"wrote {args.out}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
