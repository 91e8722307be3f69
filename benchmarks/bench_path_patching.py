"""Benchmark: dtlens' batched path-patching sweep against a one-forward-per-path loop.

Run ``python benchmarks/bench_path_patching.py`` (well under a minute on 2 CPU threads).
It builds a MemoryDT-sized decision transformer (3 layers, d_model 256, 8 heads x 32,
d_mlp 256, n_ctx 26 = 9 steps; random weights: speed does not depend on them), random
clean/corrupt windows, and times the sweep of all 24 sender heads into two receiver
sets,

* ``logits``: the final residual stream;
* ``L2 q``: the queries of the 8 layer-2 heads (``L2H0.q`` ... ``L2H7.q``, patched
  together; only the 16 heads of layers 0-1 can reach them),

in both modes (``direct``: exact edge patching; ``freeze``: the IOI paper's three steps,
MLPs not frozen), at 1 and 16 clean/corrupt pairs (denoising), with

* dtlens: :func:`dtlens.analysis.circuits.path_patching.path_patching_sweep` (sender heads x
  pairs stacked along the batch, patched runs started at the receivers' layer from the
  cached residual, heads that cannot reach a receiver skipped);
* the loop: written here with plain ``model.run_with_hooks``, one full forward per
  path in ``direct`` mode (the receiver's input recomputed from the cache in a hook)
  and two in ``freeze`` mode (step 2 with every head's ``z`` frozen, step 3 with the
  receivers patched). It skips heads that cannot reach the receivers too, so the ratio
  is not inflated by work the loop need not do.

Both timed regions include caching the clean and corrupt runs and run under
``torch.no_grad()``. Both must give the same numbers (raw metric, mean over pairs,
checked to 1e-4). Each timing is the best of ``REPEATS`` runs (the machine is shared;
the best run is the least disturbed one). The table is printed and written, with the
machine's details, to ``benchmarks/results/path_patching.json`` (``--out``);
``--threads`` and ``--repeats`` override the defaults (2 threads, 7 repeats).
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
import torch.nn.functional as F
import transformer_lens
from common import best_time, memorydt_sized_model, metric, random_batch
from torch import Tensor

from dtlens.analysis.circuits.path_patching import path_patching_sweep
from dtlens.model import HookedDecisionTransformer, TrajectoryBatch

RESULTS = Path(__file__).resolve().parent / "results" / "path_patching.json"
THREADS = 2
REPEATS = 7
PAIRS = (1, 16)
TOLERANCE = 1e-4
TARGET_RATIO = 5.0


# ------------------------------------------------------------------ the baseline loop
def layer_norm(model: HookedDecisionTransformer, ln: torch.nn.Module, x: Tensor) -> Tensor:
    """The model's LayerNorm (it is built with normalization="LN") on an edited residual."""
    return F.layer_norm(x, (model.cfg.d_model,), ln.weight, ln.bias, model.cfg.eps)


def loop_sweep(
    model: HookedDecisionTransformer,
    clean: TrajectoryBatch,
    corrupt: TrajectoryBatch,
    receivers: str,
    mode: str,
) -> Tensor:
    """Mean patched metric per sender head ``[layer, head]``, one path at a time (denoise)."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    with torch.no_grad():
        _, src = model.run_with_cache(clean)
        base_logits, base = model.run_with_cache(corrupt)
        out = metric(base_logits).mean().repeat(n_layers, n_heads)
        for layer in range(n_layers):
            if receivers == "L2 q" and layer >= 2:
                continue  # cannot reach a layer-2 query: the base metric
            for head in range(n_heads):
                if mode == "direct":
                    logits = _direct_path(model, corrupt, src, base, layer, head, receivers)
                else:
                    logits = _freeze_path(model, corrupt, src, base, layer, head, receivers)
                out[layer, head] = metric(logits).mean()
    return out


def _direct_path(model, corrupt, src, base, layer, head, receivers) -> Tensor:
    z = f"blocks.{layer}.attn.hook_z"
    write = (src[z][:, :, head] - base[z][:, :, head]) @ model.core.W_O[layer, head]
    if receivers == "logits":
        final = base[f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"] + write
        return model.run_with_hooks(
            corrupt, fwd_hooks=[("ln_final.hook_in", lambda a, hook: final)]
        )
    x = layer_norm(model, model.core.blocks[2].ln1, base["blocks.2.hook_resid_pre"] + write)
    queries = torch.einsum("bpd,hde->bphe", x, model.core.W_Q[2]) + model.core.b_Q[2]
    return model.run_with_hooks(
        corrupt, fwd_hooks=[("blocks.2.attn.hook_q", lambda a, hook: queries)]
    )


def _freeze_path(model, corrupt, src, base, layer, head, receivers) -> Tensor:
    hooks = []
    for frozen_layer in range(model.cfg.n_layers):
        name = f"blocks.{frozen_layer}.attn.hook_z"
        frozen = base[name].clone()
        if frozen_layer == layer:
            frozen[:, :, head] = src[name][:, :, head]
        hooks.append((name, lambda a, hook, frozen=frozen: frozen))
    where = "ln_final.hook_in" if receivers == "logits" else "blocks.2.attn.hook_q"
    stored = {}
    hooks.append((where, lambda a, hook: stored.setdefault("input", a.clone())))
    model.run_with_hooks(corrupt, fwd_hooks=hooks)
    return model.run_with_hooks(corrupt, fwd_hooks=[(where, lambda a, hook: stored["input"])])


# ---------------------------------------------------------------------------- timing
RECEIVERS = {"logits": "logits", "L2 q": [f"L2H{h}.q" for h in range(8)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=THREADS, help="torch threads (default 2)")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="timings per cell (best)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = memorydt_sized_model()
    rows = []
    for n_pairs in PAIRS:
        clean, corrupt = random_batch(n_pairs, seed=1), random_batch(n_pairs, seed=2)
        for mode in ("direct", "freeze"):
            for name, receivers in RECEIVERS.items():

                def ours(receivers=receivers, mode=mode, clean=clean, corrupt=corrupt) -> Tensor:
                    with torch.no_grad():
                        return path_patching_sweep(
                            model, clean, corrupt, receivers, metric, mode=mode,
                            normalize=False, show_progress=False,
                        ).values  # fmt: skip

                def loop(name=name, mode=mode, clean=clean, corrupt=corrupt) -> Tensor:
                    return loop_sweep(model, clean, corrupt, name, mode)

                ours()  # warm-up (first-call allocations)
                t_ours, v_ours = best_time(ours, args.repeats)
                t_loop, v_loop = best_time(loop, args.repeats)
                max_diff = float((v_ours - v_loop).abs().max())
                rows.append(
                    {
                        "mode": mode,
                        "receivers": name,
                        "pairs": n_pairs,
                        "paths": 24,
                        "forwards_in_loop": (24 if name == "logits" else 16)
                        * (1 if mode == "direct" else 2),
                        "dtlens_ms": 1e3 * t_ours,
                        "loop_ms": 1e3 * t_loop,
                        "ratio": t_loop / t_ours,
                        "max_abs_diff": max_diff,
                        "same_numbers": max_diff <= TOLERANCE,
                    }
                )
                print(_row(rows[-1]), flush=True)
    report = {
        "benchmark": "path patching sweep (24 sender heads), dtlens vs one forward per path",
        "model": "3 layers, d_model 256, 8 heads x 32, d_mlp 256, n_ctx 26 (9 steps), random init",
        "direction": "denoise",
        "threads": args.threads,
        "repeats": args.repeats,
        "target_ratio": TARGET_RATIO,
        "torch": torch.__version__,
        "transformer_lens": getattr(transformer_lens, "__version__", "unknown"),
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    if not all(r["same_numbers"] for r in rows):
        raise SystemExit("dtlens and the loop disagree (see max_abs_diff)")


def _row(r: dict) -> str:
    return (
        f"{r['mode']:<6} -> {r['receivers']:<6} pairs={r['pairs']:>2}  "
        f"dtlens {r['dtlens_ms']:7.2f} ms  loop {r['loop_ms']:7.2f} ms  "
        f"ratio {r['ratio']:5.1f}x  max|diff| {r['max_abs_diff']:.1e}"
    )


if __name__ == "__main__":
    main()
