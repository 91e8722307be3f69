"""Benchmark: attribution patching against exact activation patching, speed and agreement.

Run ``python benchmarks/bench_attribution_patching.py`` from the repository root (about
half a minute on 1 CPU thread). For each model

* the shipped MemoryDT (``dtlens.load("memorydt")``),
* the original project's ``dti_memory_gated_mlp.pt`` from ``../shared/checkpoints``
  (skipped if absent),
* a MemoryDT-sized random model (3 layers, d_model 256, 8 heads; the model of the other
  patching benchmarks, with their random windows),

it times, in this one process, the ``z`` sweep by (layer, pos, head) of one
clean/corrupt pair three ways:

* :func:`dtlens.analysis.patching.activation.activation_patching`, the exact sweep
  (batched, prefix reuse: the baseline);
* :func:`dtlens.analysis.patching.attribution.attribution_patching`, its first-order
  estimate (one forward of each run, one backward);
* a loop of one ``run_with_hooks`` forward per patch (what activation patching costs
  without batching), timed once.

Timings are the best of ``REPEATS``, the exact and the attribution sweep alternating so
that both see the same machine load. The agreement of the estimate with the exact sweep
(restored fractions, denoising, metric ``logit(answer) - logit(wrong)`` at S9) is the
Spearman rank correlation and the largest absolute error over the sweep's locations, on
each of the 4 instruction-swap layouts (one pair each; random windows for the random
model), for the timed sweep and, on the two trained models, for every sweep of
``PATCHING_SWEEPS``. Results are printed and written, with the machine's details, to
``benchmarks/results/attribution_patching.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import memorydt_sized_model, random_batch
from common import metric as random_metric

import dtlens
from dtlens.analysis.edits.scenarios import model_instruction_pairs
from dtlens.analysis.patching.activation import activation_patching
from dtlens.analysis.patching.attribution import attribution_patching, rank_correlation
from dtlens.analysis.patching.sweeps import PATCHING_SWEEPS
from dtlens.model import HookedDecisionTransformer, TrajectoryBatch

RESULTS = Path(__file__).resolve().parent / "results" / "attribution_patching.json"
SHARED = Path(__file__).resolve().parents[2] / "shared"
ORIGINAL = SHARED / "checkpoints" / "dti_memory_gated_mlp.pt"
THREADS = 1
REPEATS = 5
GOAL = 100.0
TIMED = ("z", ("layer", "pos", "head"))


def load_models() -> list[tuple[str, HookedDecisionTransformer, list[tuple]]]:
    """``(name, model, [(label, clean, corrupt, metric), ...])`` per benchmarked model."""
    out = []
    shipped = dtlens.load("memorydt").eval()
    out.append(("shipped memorydt", shipped, _layout_pairs(shipped)))
    if ORIGINAL.exists():
        original = dtlens.load(ORIGINAL).eval()
        out.append(("original dti_memory_gated_mlp.pt", original, _layout_pairs(original)))
    else:
        print(f"skipping the original model: {ORIGINAL} is absent")
    sized = memorydt_sized_model()
    pairs = [
        (f"random windows {i}", random_batch(1, 2 * i + 1), random_batch(1, 2 * i + 2),
         random_metric)
        for i in range(4)
    ]  # fmt: skip
    out.append(("MemoryDT-sized random model", sized, pairs))
    return out


def _layout_pairs(model: HookedDecisionTransformer) -> list[tuple]:
    return [
        (pair.description, pair.clean, pair.corrupt, pair.metric(model))
        for pair in model_instruction_pairs(model, rtg=0.9)
    ]


def naive_loop(
    model: HookedDecisionTransformer,
    clean: TrajectoryBatch,
    corrupt: TrajectoryBatch,
    metric: Callable,
) -> torch.Tensor:
    """The z sweep by (layer, pos, head) as one full forward per patch: raw metric."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    names = [f"blocks.{layer}.attn.hook_z" for layer in range(n_layers)]
    with torch.no_grad():
        _, cache = model.run_with_cache(clean, names_filter=names)
        n_pos = cache[names[0]].shape[1]
        out = torch.zeros(n_layers, n_pos, n_heads)
        for layer, pos, head in torch.cartesian_prod(
            torch.arange(n_layers), torch.arange(n_pos), torch.arange(n_heads)
        ).tolist():

            def patch(act, hook, layer=layer, pos=pos, head=head):
                act = act.clone()
                act[:, pos, head] = cache[names[layer]][:, pos, head]
                return act

            logits = model.run_with_hooks(corrupt, fwd_hooks=[(names[layer], patch)])
            out[layer, pos, head] = metric(logits).mean()
    return out


def alternating_best(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """The best wall time of each function over ``repeats`` rounds, calling them in turn."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def agreement(model, pairs, hook, by, layer=None) -> dict:
    """Rank correlation and max |error| of the estimate, per pair (restored fractions)."""
    rhos, errors = [], []
    for _, clean, corrupt, metric in pairs:
        kwargs = dict(layer=layer)
        exact = activation_patching(model, clean, corrupt, metric, hook, by, show_progress=False,
                                    **kwargs)  # fmt: skip
        fast = attribution_patching(model, clean, corrupt, metric, hook, by, **kwargs)
        rho = rank_correlation(fast.values, exact.values)
        rhos.append(None if math.isnan(rho) else rho)  # NaN: constant, the edit missed it
        errors.append(float((fast.values - exact.values).abs().max()))
    defined = [rho for rho in rhos if rho is not None]
    return {
        "sweep": f"{hook} x {' x '.join(by)}" + (f" (layer {layer})" if layer is not None else ""),
        "rank_correlation_per_pair": rhos,
        "rank_correlation_mean": statistics.fmean(defined) if defined else None,
        "rank_correlation_min": min(defined) if defined else None,
        "max_abs_error": max(errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=THREADS, help="torch threads (default 1)")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="timings per cell (best)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    started = time.perf_counter()
    hook, by = TIMED
    timing_rows, agreement_rows = [], []
    for name, model, pairs in load_models():
        _, clean, corrupt, metric = pairs[0]

        def exact(model=model, clean=clean, corrupt=corrupt, metric=metric):
            return activation_patching(model, clean, corrupt, metric, hook, by,
                                       show_progress=False).values  # fmt: skip

        def fast(model=model, clean=clean, corrupt=corrupt, metric=metric):
            return attribution_patching(model, clean, corrupt, metric, hook, by).values

        exact(), fast()  # warm up
        times = alternating_best({"exact": exact, "attribution": fast}, args.repeats)
        start = time.perf_counter()
        loop = naive_loop(model, clean, corrupt, metric)
        times["loop"] = time.perf_counter() - start
        raw_exact = activation_patching(model, clean, corrupt, metric, hook, by, normalize=False,
                                        show_progress=False).values  # fmt: skip
        agree = agreement(model, pairs, hook, by)
        row = {
            "model": name,
            "sweep": agree["sweep"],
            "pairs": 1,
            "patches": int(loop.numel()),
            "exact_s": times["exact"],
            "attribution_s": times["attribution"],
            "loop_s": times["loop"],
            "speedup_vs_exact": times["exact"] / times["attribution"],
            "speedup_vs_loop": times["loop"] / times["attribution"],
            "goal_met": times["exact"] / times["attribution"] >= GOAL,
            "loop_matches_exact": float((loop - raw_exact).abs().max()) <= 1e-4,
            "timed_pair": pairs[0][0],
            **{k: v for k, v in agree.items() if k != "sweep"},
        }
        timing_rows.append(row)
        print(_timing_row(row), flush=True)
        if name.startswith("MemoryDT-sized"):
            continue
        for sweep_hook, bys in PATCHING_SWEEPS.items():
            layer = model.cfg.n_layers - 1 if sweep_hook == "mlp_post" else None
            for sweep_by in bys:
                agreement_rows.append({"model": name, **agreement(model, pairs, sweep_hook,
                                                                  sweep_by, layer)})  # fmt: skip
                print(_agreement_row(agreement_rows[-1]), flush=True)
    report = {
        "benchmark": "attribution patching vs exact activation patching, z x layer x pos x head",
        "goal": f"attribution >= {GOAL:.0f}x faster than activation_patching at 1 pair",
        "metric": "restored fraction of logit(answer) - logit(wrong) at S9, denoising "
        "(random model: logit(0) - logit(1) at the last token)",
        "pairs": "the 4 instruction-swap layouts at RTG 0.9 in each model's own window "
        "(model_instruction_pairs), one pair each; timings on the first",
        "threads": args.threads,
        "repeats": args.repeats,
        "wall_s": time.perf_counter() - started,
        "load_average_1min_before_after": [load_before[0], os.getloadavg()[0]],
        "torch": torch.__version__,
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "timing": timing_rows,
        "agreement": agreement_rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS} in {report['wall_s']:.0f} s")


def _timing_row(r: dict) -> str:
    return (
        f"{r['model']:<34} {r['patches']:>4} patches  exact {1000 * r['exact_s']:7.1f} ms  "
        f"attribution {1000 * r['attribution_s']:6.1f} ms  loop {1000 * r['loop_s']:7.0f} ms  "
        f"x{r['speedup_vs_exact']:.1f} (loop x{r['speedup_vs_loop']:.0f})  "
        f"rho mean {r['rank_correlation_mean']:.3f} min {r['rank_correlation_min']:.3f}  "
        f"max|err| {r['max_abs_error']:.3f}"
    )


def _agreement_row(r: dict) -> str:
    if r["rank_correlation_mean"] is None:
        rho = "rho undefined (the activation is the same in both runs)"
    else:
        rho = f"rho mean {r['rank_correlation_mean']:6.3f} min {r['rank_correlation_min']:6.3f}"
    return f"  {r['model']:<34} {r['sweep']:<32} {rho}  max|err| {r['max_abs_error']:.3f}"


if __name__ == "__main__":
    main()
