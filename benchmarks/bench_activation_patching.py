"""Benchmark: dtlens' batched activation patching against TransformerLens' patching loop.

Run ``python benchmarks/bench_activation_patching.py`` (about a minute on 2 CPU
threads). It builds a MemoryDT-sized decision transformer (3 layers, d_model 256,
8 heads, d_mlp 256, n_ctx 26 = 9 steps; random weights: speed does not depend on
them), random clean/corrupt windows, and times two full sweeps

* ``resid_pre`` by (layer, pos): 3 x 26 = 78 patches;
* ``z`` by (layer, pos, head): 3 x 26 x 8 = 624 patches;

at 1 and 16 clean/corrupt pairs, with

* dtlens: :func:`dtlens.analysis.patching.activation.activation_patching` (every patch x pair
  stacked along the batch, chunked to ``max_batch`` rows, prefix below the patched
  layer reused from the cache);
* TransformerLens: ``transformer_lens.patching.get_act_patch_resid_pre`` and
  ``get_act_patch_attn_head_out_by_pos`` (one full forward of the B pairs per
  patch), on the model and "tokens" of :func:`dtlens.compat.tl_patching_inputs`
  (the adapter that gives them the ``run_with_hooks(tokens, fwd_hooks=...)`` they
  call, and tokens whose shape states the batch size and the number of positions).
  The timed region includes the clean-cache run, and runs under
  ``torch.no_grad()`` (the loop would otherwise record autograd graphs).

Both must give the same numbers (raw metric, mean over pairs; checked to 1e-4).
Each timing is the best of ``REPEATS`` runs. The table is printed and written,
with the machine's details, to ``benchmarks/results/activation_patching.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
from collections.abc import Callable
from pathlib import Path

import torch
import transformer_lens
from common import best_time, memorydt_sized_model, metric, random_batch
from torch import Tensor
from transformer_lens import patching as tl_patching

from dtlens.analysis.patching.activation import activation_patching
from dtlens.compat import tl_patching_inputs
from dtlens.model import HookedDecisionTransformer, TrajectoryBatch

RESULTS = Path(__file__).resolve().parent / "results" / "activation_patching.json"
THREADS = 2
REPEATS = 2
PAIRS = (1, 16)
MAX_BATCH = 1024
TOLERANCE = 1e-4


SWEEPS = {
    # name: (dtlens hook, dtlens by = TL's axes, TL function)
    "resid_pre x layer x pos": (
        "resid_pre",
        ("layer", "pos"),
        tl_patching.get_act_patch_resid_pre,
    ),
    "z x layer x pos x head": (
        "z",
        ("layer", "pos", "head"),
        tl_patching.get_act_patch_attn_head_out_by_pos,
    ),
}


def run_tl(
    model: HookedDecisionTransformer,
    clean: TrajectoryBatch,
    corrupt: TrajectoryBatch,
    tl_fn: Callable,
) -> Tensor:
    """TransformerLens' sweep (mean over pairs), through :mod:`dtlens.compat`."""
    # their loop draws a tqdm bar on stderr that cannot be switched off: swallow it
    with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
        _, clean_cache = model.run_with_cache(clean)
        tl_model, tokens = tl_patching_inputs(model, corrupt)
        return tl_fn(tl_model, tokens, clean_cache, metric, reduce="mean")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=THREADS, help="torch threads (default 2)")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="timings per cell (best)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    model = memorydt_sized_model()
    n_tokens = model.cfg.n_ctx
    rows = []
    for n_pairs in PAIRS:
        clean, corrupt = random_batch(n_pairs, seed=1), random_batch(n_pairs, seed=2)
        for name, (hook, by, tl_fn) in SWEEPS.items():
            dims = {"layer": model.cfg.n_layers, "pos": n_tokens, "head": model.cfg.n_heads}
            sizes = tuple(dims[c] for c in by)

            def ours(hook=hook, by=by, clean=clean, corrupt=corrupt) -> Tensor:
                return activation_patching(
                    model, clean, corrupt, metric, hook, by,
                    normalize=False, max_batch=MAX_BATCH, show_progress=False,
                ).values  # fmt: skip

            def theirs(tl_fn=tl_fn, clean=clean, corrupt=corrupt) -> Tensor:
                return run_tl(model, clean, corrupt, tl_fn)

            t_ours, v_ours = best_time(ours, args.repeats)
            t_tl, v_tl = best_time(theirs, args.repeats)
            max_diff = float((v_ours - v_tl).abs().max())
            rows.append(
                {
                    "sweep": name,
                    "pairs": n_pairs,
                    "patches": int(torch.tensor(sizes).prod()),
                    "dtlens_s": t_ours,
                    "transformer_lens_s": t_tl,
                    "speedup": t_tl / t_ours,
                    "max_abs_diff": max_diff,
                    "same_numbers": max_diff <= TOLERANCE,
                }
            )
            print(_row(rows[-1]), flush=True)
    report = {
        "benchmark": "activation patching sweeps, dtlens vs transformer_lens.patching",
        "model": "3 layers, d_model 256, 8 heads, d_mlp 256, n_ctx 26 (9 steps), random init",
        "max_batch": MAX_BATCH,
        "threads": args.threads,
        "repeats": args.repeats,
        "load_average_1min_before_after": [load_before[0], os.getloadavg()[0]],
        "torch": torch.__version__,
        "transformer_lens": transformer_lens.__version__
        if hasattr(transformer_lens, "__version__")
        else "unknown",
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    if not all(r["same_numbers"] for r in rows):
        raise SystemExit("dtlens and TransformerLens disagree (see max_abs_diff)")


def _row(r: dict) -> str:
    return (
        f"{r['sweep']:<24} pairs={r['pairs']:>2} patches={r['patches']:>4}  "
        f"dtlens {r['dtlens_s']:7.3f} s  TL {r['transformer_lens_s']:7.3f} s  "
        f"speedup {r['speedup']:5.2f}x  max|diff| {r['max_abs_diff']:.1e}"
    )


if __name__ == "__main__":
    main()
