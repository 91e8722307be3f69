"""Benchmark: how long each report section takes on a model, and the whole report.

Run ``python benchmarks/bench_report.py [--model memorydt]``. Each section of
``dtlens.report.sections.SECTION_MODULES`` runs once, in report order, with the default
``ReportConfig`` (what ``dtlens report`` runs), and its wall time is recorded with the
machine's load average before and after (the machine may be shared: a time measured
under load says so). Results go to ``benchmarks/results/report_time.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

import dtlens
from dtlens.report import ReportConfig
from dtlens.report.sections import SECTION_MODULES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="memorydt")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/report_time.json"))
    args = parser.parse_args(argv)
    model = dtlens.load(args.model)
    config = ReportConfig()
    load_before = os.getloadavg()
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    for name, module in SECTION_MODULES.items():
        t0 = time.perf_counter()
        module.run(model, config)
        seconds[name] = round(time.perf_counter() - t0, 1)
        print(f"{name}: {seconds[name]} s", flush=True)
    total = round(time.perf_counter() - start, 1)
    result = {
        "benchmark": "every report section once, default ReportConfig",
        "model": args.model,
        "total_s": total,
        "goal_s": 120.0,
        "seconds": seconds,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.platform(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"total: {total} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
