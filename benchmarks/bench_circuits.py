"""Benchmark: EAP-IG for every edge against a one-forward-per-edge exact loop; ACDC's time.

Run ``python benchmarks/bench_circuits.py`` (about a minute on 2 CPU threads). On the
shipped MemoryDT (``dtlens.load("memorydt")``; 2 layers, d_model 128, 4 heads, gated
MLP, 26 tokens) and, when ../shared is present, the original project's checkpoint, with
one instruction-swap pair (layout key/top-ball, the left - right logit difference at the
decision square), it times

* EAP-IG (5 steps, :func:`dtlens.analysis.circuits.edge_attribution_patching`): a score
  for every edge from 5 forward + backward passes;
* the loop, written here with ``model.run_with_hooks``: every edge patched alone, one
  full forward each (the receiver's input recomputed from the cached runs in a hook:
  the logits' final residual, an MLP's input, or one head's q/k/v from ``resid_pre``
  plus the sender's clean - corrupt write); the exact effect of each edge;

for the graph with whole embeddings (191 edges) and with one sender per embedding token
(1487 edges), and reports the ratio and the Spearman rank correlation between the
EAP-IG scores and the exact effects. It also times ACDC (threshold 0.02) on the same
pair. Both timed regions include caching the clean and corrupt runs. Each timing is the
best of ``--repeats`` runs. Results go to ``benchmarks/results/circuits.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
from common import best_time
from scipy.stats import spearmanr

import dtlens
from dtlens.analysis.circuits import DTGraph, acdc, edge_attribution_patching
from dtlens.analysis.circuits.node_io import sender_write
from dtlens.analysis.circuits.nodes import resolve_positions
from dtlens.analysis.edits import instruction_swap_pair

ORIGINAL = Path("../shared/checkpoints/dti_memory_gated_mlp.pt")


def loop_effects(model, clean, corrupt, metric, graph: DTGraph) -> torch.Tensor:
    """Each edge's exact effect (denoising, raw metric minus the corrupt run's), one hooked
    forward per edge."""
    with torch.no_grad():
        _, src = model.run_with_cache(clean)
        base_logits, base = model.run_with_cache(corrupt)
        base_metric = metric(base_logits).mean()
        labels = model.token_labels(clean)
        effects = []
        for edge in graph.edges:
            positions = resolve_positions(getattr(edge.sender, "pos", None), labels, edge.sender)
            write = sender_write(model, edge.sender, src, base, positions)
            r = edge.receiver
            if str(r) == "logits":
                hooks = [("ln_final.hook_in", lambda act, hook, w=write: act + w)]
            elif str(r).startswith("MLP"):
                hooks = [(f"blocks.{r.layer}.ln2.hook_in", lambda act, hook, w=write: act + w)]
            else:
                hooks = [
                    (f"blocks.{r.layer}.attn.hook_{r.kind}", _head_input(model, base, r, write))
                ]
            logits = model.run_with_hooks(corrupt, fwd_hooks=hooks)
            effects.append(metric(logits).mean() - base_metric)
    return torch.stack(effects)


def _head_input(model, base, receiver, write):
    block = model.core.blocks[receiver.layer]
    resid = base[f"blocks.{receiver.layer}.hook_resid_pre"] + write
    weight = getattr(block.attn, f"W_{receiver.kind.upper()}")[receiver.head]
    bias = getattr(block.attn, f"b_{receiver.kind.upper()}")[receiver.head]
    value = block.ln1(resid) @ weight + bias

    def hook(act, hook):
        act = act.clone()
        act[:, :, receiver.head] = value
        return act

    return hook


def run_model(name: str, repeats: int) -> list[dict]:
    model = dtlens.load(name).eval()
    pair = instruction_swap_pair("key/top-ball", padding=_padding(model))
    clean, corrupt = pair.clean, pair.corrupt
    a, w = pair.answer_action, pair.wrong_action

    def metric(logits):
        return logits[:, -1, a] - logits[:, -1, w]

    rows = []
    for kind, tokens in (
        ("whole embeddings", None),
        ("per-token embeddings", model.token_labels(clean)),
    ):
        graph = DTGraph(model, tokens)
        eap_s, scores = best_time(
            lambda g=graph: edge_attribution_patching(
                model, clean, corrupt, metric, "eap-ig", 5, normalize=False, graph=g
            ),
            repeats,
        )
        loop_s, exact = best_time(lambda g=graph: loop_effects(model, clean, corrupt, metric, g), 1)
        estimate = torch.tensor([scores.score(e) for e in graph.edges])
        rho = spearmanr(estimate.numpy(), exact.numpy()).statistic
        rows.append({
            "model": name, "graph": kind, "edges": len(graph.edges),
            "eap_ig_ms": 1000 * eap_s, "loop_ms": 1000 * loop_s, "ratio": loop_s / eap_s,
            "spearman_eap_ig_vs_exact": float(rho),
        })  # fmt: skip
        print(rows[-1])
    acdc_s, result = best_time(lambda: acdc(model, clean, corrupt, metric, 0.02), repeats)
    rows.append({"model": name, "acdc_s": acdc_s, "acdc_edges": len(result.edges),
                 "acdc_faithfulness": result.faithfulness})  # fmt: skip
    print(rows[-1])
    return rows


def _padding(model) -> str:
    return "mask" if model.context_padding == "mask" else "tokens"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/circuits.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = ["memorydt"] + ([str(ORIGINAL)] if ORIGINAL.exists() else [])
    rows = [row for name in names for row in run_model(name, args.repeats)]
    result = {
        "benchmark": "EAP-IG (5 steps) vs one exact forward per edge; ACDC on one pair",
        "pair": "instruction swap, key/top-ball, left - right logit diff at S9",
        "threads": args.threads,
        "repeats": args.repeats,
        "goals": {"eap_ig_ratio": 100.0, "acdc_s": 10.0},
        "torch": torch.__version__,
        "machine": platform.platform(),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    table = args.out.with_suffix(".md")
    table.write_text(markdown_table(result))
    print(f"wrote {args.out} and {table}")
    return 0


def markdown_table(result: dict) -> str:
    """The results as the markdown tables the docs include."""
    lines = [
        "| model | graph | edges | EAP-IG (5 steps) | exact loop | ratio | Spearman |",
        "|---|---|---|---|---|---|---|",
    ]
    acdc_lines = ["", "| model | ACDC time | edges kept | faithfulness |", "|---|---|---|---|"]
    for row in result["rows"]:
        name = "shipped MemoryDT" if row["model"] == "memorydt" else "original MemoryDT"
        if "graph" in row:
            lines.append(
                f"| {name} | {row['graph']} | {row['edges']} | {row['eap_ig_ms']:.0f} ms | "
                f"{row['loop_ms'] / 1000:.1f} s | {row['ratio']:.0f}x | "
                f"{row['spearman_eap_ig_vs_exact']:.2f} |"
            )
        else:
            acdc_lines.append(
                f"| {name} | {row['acdc_s']:.2f} s | {row['acdc_edges']} | "
                f"{row['acdc_faithfulness']:.2f} |"
            )
    return "\n".join(lines + acdc_lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
