"""Benchmark: server time of the live app from a key press to every visible figure updated.

Calls the app's callback functions directly (no browser, no HTTP), in the order Dash
runs them for one key press: the env callback (apply the key, send the grid's and the
agent's view's new pixels, as the page does after its first render), then the model
panel (probabilities, context strip) and the visible analysis tab, then serialises every
output to JSON the way Dash sends it. The sum is the server time between the key press
arriving and the last visible figure leaving.

Presses follow a fixed script (walk to the decision square, turn back and forth, step,
reset when an episode ends), so every press changes the context window and nothing is
served from the cache of a previous press. Like the page, each tab's callback is given
the key of the figures it last returned, so presses that keep the figures' shape send
new values only. Reports median and p95 per stage and in total, per visible tab, and
writes them to ``benchmarks/results/bench_app.json``.

The model is the shipped MemoryDT when it is installed, else a random model of its
shape (3 layers, d_model 256, 8 heads, d_mlp 256, 9-step context = 26 tokens): speed
depends on the shape, not on the weights.

Usage:
    python benchmarks/bench_app.py                       # MemoryDT-sized model, all tabs
    python benchmarks/bench_app.py --model memorydt --presses 100 --tabs attention
    python benchmarks/bench_app.py --model ../shared/checkpoints/dti_memory_gated_mlp.pt
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from plotly.io.json import to_json_plotly

from dtlens.app import layout
from dtlens.app.callbacks import (
    AppState,
    on_env_input,
    render_attention,
    render_lens,
    render_model_panel,
    render_patching,
)
from dtlens.app.layout import IDS
from dtlens.app.models import ModelCatalog
from dtlens.app.session import EpisodeSession
from dtlens.errors import CheckpointError
from dtlens.model import HookedDecisionTransformer
from dtlens.model.checkpoint import save
from dtlens.training.recipe import MEMORYDT_RECIPE

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_app.json"
#: the key script: to the decision square, turn, turn back, a step, ... (ids are implicit)
SCRIPT = [2, 2, 2, 2, 0, 1, 1, 0, 3, 4, 2, 1, 2]
RTG, RTG_B = 0.9, 0.0
TARGET_MS = 100.0
#: the tab names of --tabs -> the page's tab values (the model panel reads which is open)
TAB_IDS = {"attention": IDS.TAB_ATTENTION, "lens": IDS.TAB_LENS, "patching": IDS.TAB_PATCHING}


def load_state(model: str | None, scratch: Path) -> tuple[AppState, str, str]:
    """``(app state with the model loaded, its picker value, its name for the report)``;
    by default the shipped MemoryDT when it is installed, else a random model of its
    shape (``MEMORYDT_RECIPE``) saved to ``scratch``."""
    name = model
    if model is None:
        try:
            return load_state("memorydt", scratch)
        except CheckpointError:
            random_model = HookedDecisionTransformer(MEMORYDT_RECIPE.train.model).eval()
            save(random_model, scratch / "random_memorydt_shape")
            print("shipped memorydt not installed: using a random model of its shape")
            model = str(scratch / "random_memorydt_shape")
            name = "random weights, shape of MEMORYDT_RECIPE (memorydt not installed)"
    state = AppState(ModelCatalog(initial=model))
    state.catalog.get(model)
    return state, model, name


def tab_renderer(tab: str, state: AppState, model: str) -> Callable[[str], tuple]:
    """A function ``session_id -> outputs`` rendering one tab as its callback does
    (passing back the key of the figures it returned last, as the page's store does)."""
    shown: dict[str, str | None] = {"key": None}

    def payload(out) -> tuple:
        if out.message and out.kind == "error":
            raise RuntimeError(f"tab failed: {out.message}")
        shown["key"] = out.shown
        return (*out.figures, layout.message(out.message, out.kind), out.shown)

    if tab == "attention":
        return lambda sid: payload(
            render_attention(state, sid, RTG, model, 0, 0, RTG_B, shown=shown["key"])
        )
    if tab == "lens":
        return lambda sid: payload(render_lens(state, sid, RTG, model, 0, 1))
    if tab == "patching":
        return lambda sid: payload(
            render_patching(state, sid, RTG, model, "rtg", RTG_B, 0, 1, shown=shown["key"])
        )
    raise AssertionError(f"unknown tab {tab!r}")


def bench_tab(state: AppState, model: str, tab: str, presses: int) -> dict[str, dict[str, float]]:
    """Time ``presses`` key presses with ``tab`` visible; returns stage -> {median, p95} ms."""
    sid = f"bench-{tab}"
    render_tab = tab_renderer(tab, state, model)
    on_env_input(state, sid, None, None, "key", "ball", RTG, model)  # first render (warm-up)
    render_model_panel(state, sid, RTG, model, TAB_IDS[tab], RTG_B)
    render_tab(sid)
    times: dict[str, list[float]] = {"env": [], "model": [], "tab": [], "json": [], "total": []}
    event_id = 0
    for press in range(presses):
        session = state.sessions.get(sid)
        t0 = time.perf_counter()
        if session.done:
            env = on_env_input(state, sid, "reset", None, "key", "ball", RTG, model, True)
        else:
            event_id += 1
            action = SCRIPT[press % len(SCRIPT)]
            events = {"events": [{"id": event_id, "action": action}]}
            env = on_env_input(state, sid, "keys", events, "key", "ball", RTG, model, True)
        t1 = time.perf_counter()
        panel = render_model_panel(state, sid, RTG, model, TAB_IDS[tab], RTG_B)
        if panel.message:
            raise RuntimeError(f"model panel failed: {panel.message}")
        t2 = time.perf_counter()
        tab_out = render_tab(sid)
        t3 = time.perf_counter()
        to_json_plotly(
            [
                env.full,
                env.pov,
                env.status,
                layout.trajectory_list(env.trajectory),
                env.episode,
                panel.figure,
                layout.probability_table(panel.probs),
                layout.token_strip(panel.tokens),
                *tab_out,
            ]
        )
        t4 = time.perf_counter()
        for name, value in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0), strict=True):
            times[name].append(value * 1000)
    return {name: _summary(values) for name, values in times.items()}


def forward_baseline(model: HookedDecisionTransformer, repeats: int = 50) -> float:
    """Median ms of one plain forward of a full window at batch 1 (same run, same load):
    the unit the per-press times are also reported in, as they scale with the machine."""
    session = EpisodeSession()
    for action in SCRIPT[: model.cfg.n_timesteps]:
        session.step(action)
    window = model.pad_context(session.history(RTG, model.cfg.n_timesteps))
    times = []
    with torch.no_grad():
        for _ in range(repeats + 5):
            t0 = time.perf_counter()
            model(window)
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times[5:])


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median": round(statistics.median(values), 2), "p95": round(p95, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model to load (default: MemoryDT-sized)")
    parser.add_argument("--presses", type=int, default=60, help="timed key presses per tab")
    parser.add_argument(
        "--tabs", nargs="+", choices=list(TAB_IDS), default=list(TAB_IDS), help="visible tabs"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1, as `dtlens app`)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON output path")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        state, model, name = load_state(args.model, Path(scratch))
    loaded = state.catalog.get(model)
    forward_ms = forward_baseline(loaded)
    print(f"baseline: one batch-1 forward of a full window {forward_ms:.2f} ms")
    results = {}
    for tab in args.tabs:
        results[tab] = bench_tab(state, model, tab, args.presses)
        total = results[tab]["total"]
        results[tab]["total_in_forwards"] = round(total["median"] / forward_ms, 1)
        verdict = "under" if total["median"] < TARGET_MS else "OVER"
        print(
            f"{tab:>10} visible: key press -> all visible figures median {total['median']:.1f} ms, "
            f"p95 {total['p95']:.1f} ms = {total['median'] / forward_ms:.1f} forwards "
            f"({verdict} the {TARGET_MS:.0f} ms target)"
        )
        stages = ", ".join(
            f"{k} {v['median']:.1f}"
            for k, v in results[tab].items()
            if k not in ("total", "total_in_forwards")
        )
        print(f"{'':>10} stages (median ms): {stages}")
    report = {
        "benchmark": "bench_app",
        "what": "server time from a key press to every visible figure updated (callbacks "
        "called directly, outputs serialised as Dash does); ms",
        "model": name,
        "model_config": {
            k: getattr(loaded.cfg, k) for k in ("n_layers", "d_model", "n_heads", "d_mlp", "n_ctx")
        },
        "presses_per_tab": args.presses,
        "target_ms": TARGET_MS,
        "forward_ms": round(forward_ms, 3),
        "results": results,
        "machine": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_1m_at_end": os.getloadavg()[0],
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
