"""Finding: the instruction moves from its observation straight to the decision token.

The seed (activation patching, instruction key -> ball): "the information from S5 (the
only observation where you can see the instruction token) is moved immediately to S9
(from which we will predict our action)". In the seed's 9-step window S1-S4 are
padding, S5 is the first real observation (the start position, the only view showing
the instruction) and S9 is the decision square, where the turn is predicted. Our
layouts have the same window (:func:`~dtlens.analysis.edits.scenarios.instruction_swap_pair`:
four padding steps, then five real ones), so S_instr = S5 and S_final = S9 here too.

Here: path patching (denoising; values are the restored fraction, 1 = the path alone
restores the clean decision, mean over the layouts) on the instruction-swap pairs of
all four layouts at the high RTG (where the instruction decides the turn, so clean
and corrupt differ clearly in every layout; the seed patched one layout at RTG 0),
with the left - right logit difference at S_final as the metric. Only S_instr differs
between clean and corrupt, so every path starts there, and the instruction can reach
S_final only through attention; the question is whether one attention hop carries it
(S_instr -> S_final) or a chain through the tokens between:

1. every head -> logits (``"direct"`` mode: the head's clean write reaches only the
   final residual): a head's direct effect on the decision. Only its write at S_final
   can matter (a position's logits read only that position's residual stream), so
   restricting the senders to S_final gives the same numbers. And each head's write
   at S_final alone -> logits in ``"freeze"`` mode (every other head frozen, the MLPs
   live): the head's effect through the MLPs at S_final.
2. heads -> every later reader (``"direct"`` mode; the readers are the q/k/v of every
   head of a later layer and the input of every MLP of the head's layer or later),
   with each head's write restricted to S_instr, to the tokens strictly between
   S_instr and S_final, or to S_final; and all layer-0 heads together with their
   writes at each single token. A layer-0 write at S_final means a layer-0 head at
   S_final read S_instr (one hop); a write at S_instr is one hop too if a later head
   at S_final reads it there; a write at a token between can reach S_final only
   through a second hop. The claim holds here when the tokens between restore less
   than :data:`ONE_HOP_RATIO` of the larger one-hop route.
3. the instruction observation's state embedding -> each head's q, k and v: which heads
   read the instruction where it enters; with the attention each head pays from S_final
   to S_instr in the clean runs.

When the kept layouts' clean and corrupt decisions differ by less than
``config.min_gap`` logits on average (``numbers["instruction_gap"]``), every figure is
drawn greyed out with the gap written inside it (the restored fractions divide by almost
nothing), and the text says the claim cannot be judged.
"""

from __future__ import annotations

from dataclasses import replace

import plotly.graph_objects as go
import torch
from jaxtyping import Float
from torch import Tensor

from dtlens.analysis.circuits.nodes import Embed, Head
from dtlens.analysis.circuits.path_patching import path_patching, path_patching_sweep
from dtlens.analysis.edits.scenarios import model_instruction_pairs
from dtlens.analysis.metrics import make_logit_diff_metric
from dtlens.analysis.patching.results import PatchingResult
from dtlens.env import SCENARIOS
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.plotting import plot_patching as _plot_patching
from dtlens.report.config import ReportConfig
from dtlens.report.section import Section, round_value
from dtlens.report.sections.patching import instruction_blind_caveat

__all__ = [
    "MIN_GAP",
    "MIN_GAP_SHARE",
    "ONE_HOP_RATIO",
    "RECEIVER_KINDS",
    "Pairs",
    "downstream_inputs",
    "instruction_pairs",
    "key_tokens",
    "run",
]

#: The claim holds when intermediate-token paths restore less than this share of the
#: larger one-hop path (layer-0 writes at S_instr or at S_final).
ONE_HOP_RATIO = 0.25
#: The inputs of a receiver head.
RECEIVER_KINDS = ("q", "k", "v")
#: Layouts whose clean - corrupt gap in the metric is below this share of the largest
#: gap (or below :data:`MIN_GAP`) are left out: their restored fractions would divide
#: by almost nothing and swamp the mean.
MIN_GAP_SHARE = 0.1
#: The smallest clean - corrupt gap (logits) a layout needs to be patched at all.
MIN_GAP = 1e-4
SEED_SAW = (
    "Activation patching the instruction (key -> ball) in the exception layout at RTG 0 "
    "moved the logit difference from -0.066 to -8.275; the restored fraction showed the "
    "information from S5 (the first real observation of the padded 9-step window, the only "
    "one where the instruction is visible) moving immediately to S9 (the decision square, "
    "whose state token predicts the turn). The seed proposed path patching to check it."
)


def instruction_pairs(
    model: HookedDecisionTransformer, rtg: float
) -> tuple[TrajectoryBatch, TrajectoryBatch, list[str]]:
    """Clean and corrupt batches of the instruction swap in the four layouts (one row each).

    Windows are the model's full context, padded the way the model expects
    (``model.context_padding``), ending at the decision square.

    Example:
        >>> clean, corrupt, layouts = instruction_pairs(model, rtg=0.9)  # doctest: +SKIP
        >>> clean.obs.shape[:2], layouts[0]  # doctest: +SKIP
        (torch.Size([4, 9]), 'key/top-key')
    """
    pairs = model_instruction_pairs(model, rtg)
    clean = TrajectoryBatch.cat([p.clean for p in pairs]).to(model.device)
    corrupt = TrajectoryBatch.cat([p.corrupt for p in pairs]).to(model.device)
    return clean, corrupt, [s.name for s in SCENARIOS]


def key_tokens(
    model: HookedDecisionTransformer, clean: TrajectoryBatch, corrupt: TrajectoryBatch
) -> tuple[str, list[str], str]:
    """``(S_instr, intermediate tokens, S_final)`` as token labels.

    ``S_instr`` is the state token of the first step whose observation differs between
    clean and corrupt in any row (the seed's S5), ``S_final`` the last state token (S9).

    Example:
        >>> instr, between, final = key_tokens(model, clean, corrupt)  # doctest: +SKIP
        >>> instr, between[:2], final  # doctest: +SKIP
        ('S5', ['A5', 'R6'], 'S9')
    """
    labels = model.token_labels(clean)
    differs = (clean.obs != corrupt.obs).flatten(2).any(-1).any(0)
    positions = model.state_positions(clean.n_steps)
    first = positions[int(differs.nonzero()[0])]
    last = positions[-1]
    return labels[first], labels[first + 1 : last], labels[last]


def downstream_inputs(model: HookedDecisionTransformer) -> list[str]:
    """Every reader a layer-0 head reaches besides the logits: the q, k and v of every
    head after layer 0 (``"L1H0.q"``, ...) and every MLP's input (``"MLP0"``, ...).

    Example:
        >>> downstream_inputs(model)[:3], downstream_inputs(model)[-1]  # doctest: +SKIP
        (['L1H0.q', 'L1H0.k', 'L1H0.v'], 'MLP2')
    """
    cfg = model.cfg
    heads = [
        f"L{layer}H{head}.{kind}"
        for layer in range(1, cfg.n_layers)
        for head in range(cfg.n_heads)
        for kind in RECEIVER_KINDS
    ]
    return heads + [f"MLP{layer}" for layer in range(cfg.n_layers)]


def _head_table(values: Float[Tensor, "layer head"]) -> dict[str, float]:
    """``{"L0H0": value, ...}``, rounded."""
    return {
        f"L{layer}H{head}": round_value(values[layer, head])
        for layer in range(values.shape[0])
        for head in range(values.shape[1])
    }


def _by_head(
    values: Float[Tensor, "*outer layer head"], axes: dict[str, list[str]]
) -> PatchingResult:
    """Restored fractions with leading axes ``axes`` then layer x head, for plot_patching."""
    layers, heads = values.shape[-2:]
    labels = {
        **axes,
        "layer": [str(i) for i in range(layers)],
        "head": [str(i) for i in range(heads)],
    }
    return PatchingResult(
        values, axes=(*axes, "layer", "head"), labels=labels, metric_name="restored fraction"
    )


def _plot(result: PatchingResult, title: str, p: Pairs) -> go.Figure:
    """``plot_patching`` with each heatmap cell's value written in it (grids are small),
    greyed out when the kept layouts' clean - corrupt gap is under ``config.min_gap``."""
    figure = _plot_patching(replace(result, info=p.gap_info()), title=title, min_gap=p.min_gap)
    return figure.update_traces(texttemplate="%{z:.2f}", selector={"type": "heatmap"})


def _rounded(values: Tensor) -> list[float]:
    return [round_value(v) for v in values]


def _top(table: dict[str, float], n: int = 3) -> str:
    best = sorted(table, key=lambda k: -abs(table[k]))[:n]
    return ", ".join(f"{k} {table[k]:+.2f}" for k in best)


class Pairs:
    """The instruction-swap pairs of the four layouts at ``config.high_rtg``: clean and
    corrupt batches (the kept layouts' rows), the left - right logit-difference metric
    and the key tokens. The path-patching, circuit and scrubbing sections work on them.

    Layouts whose clean - corrupt gap is under :data:`MIN_GAP` or under
    :data:`MIN_GAP_SHARE` of the largest gap are left out (``all_layouts`` lists every
    layout, ``layouts`` the kept ones).

    Example:
        >>> p = Pairs(dtlens.load("memorydt"), ReportConfig())  # doctest: +SKIP
        >>> p.layouts, p.instr, p.final  # doctest: +SKIP
        (['key/top-key', 'key/top-ball', 'ball/top-key', 'ball/top-ball'], 'S5', 'S9')
    """

    def __init__(self, model: HookedDecisionTransformer, config: ReportConfig) -> None:
        self.model = model
        self.rtg = config.high_rtg
        self.min_gap = config.min_gap
        clean, corrupt, self.all_layouts = instruction_pairs(model, config.high_rtg)
        self.metric = make_logit_diff_metric("left", "right", model=model)
        with torch.no_grad():
            self.clean_diff = self.metric(model(clean))
            self.corrupt_diff = self.metric(model(corrupt))
        gap = (self.clean_diff - self.corrupt_diff).abs()
        keep = ((gap >= MIN_GAP) & (gap >= MIN_GAP_SHARE * gap.max())).nonzero().flatten()
        self.layouts = [self.all_layouts[i] for i in keep.tolist()]
        self.keep = keep
        # no layout kept: nothing is path-patched (run() says so), and a batch is never empty
        self.clean, self.corrupt = (clean[keep], corrupt[keep]) if len(keep) else (clean, corrupt)
        self.labels = model.token_labels(clean)
        self.instr, self.between, self.final = key_tokens(model, clean, corrupt)

    def gap_info(self) -> dict[str, Tensor]:
        """The kept layouts' clean and corrupt metrics, as a sweep's ``info`` holds them."""
        return {
            "clean_metric": self.clean_diff[self.keep],
            "corrupt_metric": self.corrupt_diff[self.keep],
        }

    def mean_gap(self) -> float:
        """Mean |clean - corrupt| over the kept layouts (0 when none is kept)."""
        gaps = (self.clean_diff - self.corrupt_diff)[self.keep].abs()
        return round_value(gaps.mean()) if len(gaps) else 0.0

    def diffs(self) -> dict[str, dict[str, float]]:
        """The metric on the clean and corrupt runs of every layout (kept or not)."""
        return {
            run: dict(zip(self.all_layouts, _rounded(values), strict=True))
            for run, values in (("clean", self.clean_diff), ("corrupt", self.corrupt_diff))
        }

    def sweep(
        self, receivers: list[str] | str, pos: list[str] | None = None, mode: str = "direct"
    ) -> PatchingResult:
        """Every head alone, its writes at ``pos`` (None = every token) -> ``receivers``."""
        return path_patching_sweep(
            self.model,
            self.clean,
            self.corrupt,
            receivers,
            self.metric,
            mode=mode,
            sender_pos=pos,
            show_progress=False,
        )

    def patch(self, senders: list[Head | Embed] | Embed, receivers: list[str] | str) -> float:
        """The senders together -> ``receivers``, restored fraction (mean over layouts)."""
        value = path_patching(self.model, self.clean, self.corrupt, senders, receivers, self.metric)
        return round_value(value)

    def layer0(self, pos: list[str] | None, receivers: list[str]) -> float:
        """All layer-0 heads together, their writes at ``pos`` (None = all) -> receivers."""
        if pos is not None and not pos:
            return 0.0
        at = None if pos is None else tuple(pos)
        heads = [Head(0, h, at) for h in range(self.model.cfg.n_heads)]
        return self.patch(heads, receivers)


def run(model: HookedDecisionTransformer, config: ReportConfig) -> Section:
    """Compute the section: heads -> logits, layer-0 heads -> later heads by the tokens
    their writes are restricted to, and the instruction embedding -> every head's q/k/v.

    Raises:
        ObservationError: the model's context is too short for its window to show the
            instruction observation (fewer than 5 steps).

    Example:
        >>> section = run(dtlens.load("memorydt"), ReportConfig())  # doctest: +SKIP
        >>> section.numbers["instruction_token"], section.numbers["claim_holds"]  # doctest: +SKIP
        ('S5', True)
    """
    p = Pairs(model, config)
    numbers: dict = {
        "rtg": config.high_rtg,
        "layouts": p.layouts,
        "left_out_layouts": [name for name in p.all_layouts if name not in p.layouts],
        "labels": p.labels,
        "instruction_token": p.instr,
        "intermediate_tokens": p.between,
        "final_token": p.final,
        "clean_logit_diff": p.diffs()["clean"],
        "corrupt_logit_diff": p.diffs()["corrupt"],
        "instruction_gap": p.mean_gap(),
        "min_gap": config.min_gap,
    }
    title = f"Path patching: does the instruction move straight from {p.instr} to {p.final}?"
    if not p.layouts:
        text = (
            f"Swapping the instruction (only {p.instr} differs) changes the decision at "
            f"{p.final} by less than {MIN_GAP} logits in every layout, so there is nothing "
            "to path-patch: this model ignores the instruction."
        )
        return Section("path_patching", title, [], numbers, SEED_SAW, text)
    to_logits = p.sweep("logits")
    via_mlps = p.sweep("logits", [p.final], mode="freeze")
    numbers |= {
        "heads_to_logits": _head_table(to_logits.values),
        "heads_to_logits_by_layout": {
            name: _head_table(to_logits.info["per_pair"][..., i])
            for i, name in enumerate(p.layouts)
        },
        "heads_at_final_via_mlps": _head_table(via_mlps.values),
    }
    paths = ["head -> logits", f"head@{p.final} -> MLPs -> logits"]
    figures = [
        _plot(
            _by_head(torch.stack([to_logits.values, via_mlps.values]), {"path": paths}),
            title=f"Each head's effect on the decision at {p.final}: direct, and through the "
            "MLPs with every other head frozen",
            p=p,
        )
    ]
    figures += _routes(p, numbers)
    reads = torch.tensor(
        [
            [
                [
                    p.patch(Embed("state", (p.instr,)), f"L{layer}H{head}.{kind}")
                    for head in range(model.cfg.n_heads)
                ]
                for layer in range(model.cfg.n_layers)
            ]
            for kind in RECEIVER_KINDS
        ]
    )
    numbers["instruction_embed_to_heads"] = {
        kind: _head_table(reads[i]) for i, kind in enumerate(RECEIVER_KINDS)
    }
    numbers["attention_final_to_instruction"] = _attention_to_instruction(p)
    figures.append(
        _plot(
            _by_head(reads, {"input": list(RECEIVER_KINDS)}),
            title=f"The instruction observation's embedding ({p.instr}) -> each head's q, k, v",
            p=p,
        )
    )
    return Section(
        key="path_patching",
        title=title,
        figures=figures,
        numbers=numbers,
        seed_saw=SEED_SAW,
        this_model=_caveat(numbers) + _describe(numbers),
    )


def _caveat(numbers: dict) -> str:
    """The activation-patching section's warning when the swap barely moves the decision."""
    clean, corrupt = numbers["clean_logit_diff"], numbers["corrupt_logit_diff"]
    gaps = [clean[name] - corrupt[name] for name in numbers["layouts"]]
    return instruction_blind_caveat(
        gaps, numbers["instruction_token"], numbers["final_token"], numbers["min_gap"]
    )


def _routes(p: Pairs, numbers: dict) -> list[go.Figure]:
    """Heads -> every later reader, by the tokens the heads write at; fills ``numbers``."""
    receivers = downstream_inputs(p.model)
    routes = {
        "instruction_token": [p.instr],
        "intermediate_tokens": p.between,
        "final_token": [p.final],
    }
    names = {
        "instruction_token": p.instr,
        "intermediate_tokens": "the tokens between",
        "final_token": p.final,
    }
    by_route = {route: p.sweep(receivers, pos).values for route, pos in routes.items() if pos}
    group = {route: p.layer0(pos, receivers) for route, pos in routes.items()}
    group["all_tokens"] = p.layer0(None, receivers)
    by_token = torch.tensor([p.layer0([label], receivers) for label in p.labels])
    one_hop = max(abs(group["instruction_token"]), abs(group["final_token"]))
    share = abs(group["intermediate_tokens"]) / one_hop if one_hop > 0 else None
    numbers.update(
        l0_to_readers=group,
        l0_to_readers_by_token=dict(zip(p.labels, _rounded(by_token), strict=True)),
        heads_to_readers={route: _head_table(v) for route, v in by_route.items()},
        intermediate_over_one_hop=None if share is None else round_value(share),
        claim_holds=share is not None and share < ONE_HOP_RATIO,
    )
    stacked = _by_head(
        torch.stack(list(by_route.values())), {"writes at": [names[r] for r in by_route]}
    )
    tokens = PatchingResult(
        by_token, axes=("token",), labels={"token": p.labels}, metric_name="restored fraction"
    )
    return [
        _plot(
            stacked,
            title=f"Each head -> later heads' q/k/v and MLPs, its writes only at {p.instr}, "
            f"between, or at {p.final}",
            p=p,
        ),
        _plot(
            tokens,
            title="All layer-0 heads -> later heads' q/k/v and MLPs, their writes at one token",
            p=p,
        ),
    ]


def _attention_to_instruction(p: Pairs) -> dict[str, float]:
    """Each head's attention from S_final to S_instr in the clean runs (mean over layouts)."""
    model = p.model
    with torch.no_grad():
        _, cache = model.run_with_cache(p.clean, names_filter=lambda n: n.endswith("hook_pattern"))
    query, key = p.labels.index(p.final), p.labels.index(p.instr)
    weights = torch.stack(
        [
            cache[f"blocks.{layer}.attn.hook_pattern"][:, :, query, key].mean(0)
            for layer in range(model.cfg.n_layers)
        ]
    )
    return _head_table(weights)


def _describe(n: dict) -> str:
    """The section's summary, written from its numbers."""
    instr, final = n["instruction_token"], n["final_token"]
    flips = ", ".join(
        f"{k} {n['clean_logit_diff'][k]:+.2f} -> {n['corrupt_logit_diff'][k]:+.2f}"
        for k in n["clean_logit_diff"]
    )
    if n["left_out_layouts"]:
        flips += (
            f" ({', '.join(n['left_out_layouts'])} left out: a gap under "
            f"{MIN_GAP_SHARE:.0%} of the largest)"
        )
    g = n["l0_to_readers"]
    reads = n["instruction_embed_to_heads"]["v"]
    reader = max(reads, key=lambda k: abs(reads[k]))
    text = (
        f"Swapping the instruction (only {instr} differs) changes the left - right logit "
        f"difference at {final} (clean -> corrupt, RTG {n['rtg']}): {flips}. "
        f"The heads whose values read the instruction embedding at {instr} most: {_top(reads)}; "
        f"{reader} puts {n['attention_final_to_instruction'][reader]:.2f} of {final}'s "
        f"attention on {instr}. Direct effects on the decision (head -> logits): "
        f"{_top(n['heads_to_logits'])}; each head's write at {final} alone, through the MLPs "
        f"with every other head frozen: {_top(n['heads_at_final_via_mlps'])}. "
        "All layer-0 heads -> later heads' q/k/v and MLPs "
        f"restore {g['all_tokens']:+.2f}; with their writes only at {instr}: "
        f"{g['instruction_token']:+.2f}, only at {final}: {g['final_token']:+.2f}, only at the "
        f"{len(n['intermediate_tokens'])} tokens between: {g['intermediate_tokens']:+.2f}. "
    )
    ratio = n["intermediate_over_one_hop"]
    if n["instruction_gap"] < n["min_gap"]:
        return text + (
            f"The swap moves the decision by {n['instruction_gap']:.3f} logits on average (under "
            f"{n['min_gap']:g}), so these shares divide by almost nothing: the figures are greyed "
            "out and the claim cannot be judged."
        )
    if ratio is None:
        return text + "Neither one-hop route restores anything, so the claim cannot be judged."
    verdict = "supports" if n["claim_holds"] else "does not support"
    return text + (
        f"The tokens between carry {ratio:.0%} of the larger one-hop route, which {verdict} "
        f"the seed's 'moved immediately' (threshold {ONE_HOP_RATIO:.0%})."
    )
