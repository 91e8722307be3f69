"""Finding: the instruction-swap circuit, found by EAP-IG, checked by ACDC, judged by faithfulness.

The seed located the memory circuit by activation and path patching (the instruction
at S5 moves to the decision at S9 through attention). Circuit discovery asks for the
whole subgraph: which edges of the model's graph (:class:`~dtlens.analysis.circuits.DTGraph`:
the four DT embeddings, every head and MLP as senders; every head's q/k/v, every MLP's
input and the logits as receivers) carry the instruction's effect on the decision.

On the instruction-swap pairs of the four layouts at the high RTG (the same pairs and
metric as the path-patching section: the left - right logit difference at the decision
square; layouts whose clean - corrupt gap is too small to normalise are left out):

1. every edge is scored by EAP-IG (:func:`~dtlens.analysis.circuits.edge_attribution_patching`,
   5 steps), and the top-k edges are evaluated *exactly* for k from 0 to every edge: the
   faithfulness curve (:func:`~dtlens.analysis.circuits.faithfulness_curve`), the share
   of the clean - corrupt gap the circuit alone keeps with every other edge carrying the
   corrupt run's value. The circuit is the smallest top-k reaching :data:`TARGET`;
2. ACDC (:func:`~dtlens.analysis.circuits.acdc`, exact greedy pruning at threshold
   :data:`ACDC_THRESHOLD`) prunes the graph independently; the two circuits are compared
   by size, faithfulness and shared edges (Hanna et al. 2024: judge circuits by
   faithfulness, not by overlap);
3. the heads each method implicates are set beside the heads activation patching
   (``z``, by head) and path patching (head -> logits) single out.

``numbers["instruction_gap"]`` is the kept layouts' mean clean - corrupt gap; under
``config.min_gap`` logits the text says that faithfulness is a share of almost nothing
(the verdict box calls the finding one that cannot be judged).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dtlens.analysis.circuits import (
    DTGraph,
    Edge,
    EdgeScores,
    FaithfulnessCurve,
    Head,
    acdc,
    circuit_faithfulness,
    edge_attribution_patching,
    faithfulness_curve,
)
from dtlens.analysis.circuits.path_patching import path_patching_sweep
from dtlens.analysis.patching.activation import activation_patching
from dtlens.errors import ConfigError
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.plotting.circuits import plot_circuit, plot_faithfulness
from dtlens.report.config import ReportConfig
from dtlens.report.section import Section, round_value
from dtlens.report.sections.path_patching import MIN_GAP, Pairs

__all__ = [
    "ACDC_THRESHOLD",
    "FALLBACK_EDGES",
    "IG_STEPS",
    "TARGET",
    "FoundCircuit",
    "find_circuit",
    "run",
]

#: The faithfulness a circuit must reach to be called the circuit.
TARGET = 0.9
#: ACDC's threshold: how much one edge's removal may move the faithfulness away from 1.
ACDC_THRESHOLD = 0.02
#: EAP-IG's integration steps.
IG_STEPS = 5
#: Edges drawn when no top-k circuit reaches :data:`TARGET`.
FALLBACK_EDGES = 15
SEED_SAW = (
    "The seed located the memory circuit with activation and path patching: the instruction, "
    "visible only in the first real observation (S5), moves to the decision square's state "
    "token (S9) through attention; it did not extract the circuit as a whole."
)


@dataclass(frozen=True)
class FoundCircuit:
    """The instruction-swap circuit as the report finds it (:func:`find_circuit`).

    Attributes:
        scores: EAP-IG's score of every edge (``scores.graph``: the graph scored).
        curve: the exact faithfulness of EAP-IG's top-k edges, for every k.
        n_edges: the smallest k whose faithfulness reaches :data:`TARGET` (None: none does).
        edges: EAP-IG's top ``n_edges`` edges, or its top :data:`FALLBACK_EDGES` when
            ``n_edges`` is None.
    """

    scores: EdgeScores
    curve: FaithfulnessCurve
    n_edges: int | None
    edges: list[Edge]


def find_circuit(pairs: Pairs) -> FoundCircuit:
    """The circuit carrying the instruction swap's effect on the decision.

    Every edge of :class:`~dtlens.analysis.circuits.DTGraph` is scored by EAP-IG
    (:data:`IG_STEPS` steps) on ``pairs`` (their kept layouts), the top-k edges are
    evaluated exactly for every k, and the circuit is the smallest top-k keeping
    :data:`TARGET` of the clean - corrupt gap (EAP-IG's top :data:`FALLBACK_EDGES`
    when none does). The circuit and scrubbing sections both call it (each on its own
    pairs: about a second each), so the two share one definition of the circuit.

    Raises:
        ConfigError: ``pairs`` kept no layout (the instruction moves no decision: there
            is no circuit to find).

    Example:
        >>> found = find_circuit(Pairs(dtlens.load("memorydt"), ReportConfig()))  # doctest: +SKIP
        >>> found.n_edges, len(found.edges)  # doctest: +SKIP
        (46, 46)
    """
    if not pairs.layouts:
        raise ConfigError(
            "the instruction swap moves no layout's decision: there is no circuit to find"
        )
    model = pairs.model
    args = (model, pairs.clean, pairs.corrupt, pairs.metric)
    scores = edge_attribution_patching(*args, "eap-ig", steps=IG_STEPS, graph=DTGraph(model))
    curve = faithfulness_curve(*args, scores)
    n_edges = curve.smallest(TARGET)
    edges = scores.top(n_edges if n_edges is not None else FALLBACK_EDGES)
    return FoundCircuit(scores, curve, n_edges, edges)


def run(model: HookedDecisionTransformer, config: ReportConfig) -> Section:
    """Compute the section: EAP-IG scores and their faithfulness curve, ACDC, heads compared.

    Examples:
        >>> section = run(dtlens.load("memorydt"), ReportConfig())  # doctest: +SKIP
        >>> section.numbers["n_edges"], section.numbers["faithfulness"]  # doctest: +SKIP
        (46, 0.92)
    """
    p = Pairs(model, config)
    graph = DTGraph(model)
    numbers: dict = {
        "rtg": config.high_rtg,
        "layouts": p.layouts,
        "left_out_layouts": [name for name in p.all_layouts if name not in p.layouts],
        "target": TARGET,
        "n_edges_total": len(graph.edges),
        "instruction_gap": p.mean_gap(),
        "min_gap": config.min_gap,
    }
    title = "The instruction-swap circuit: EAP-IG, checked by ACDC and by exact faithfulness"
    if not p.layouts:
        text = (
            f"Swapping the instruction changes the decision at {p.final} by less than "
            f"{MIN_GAP} logits in every layout: there is no circuit to find (this model "
            "ignores the instruction), so nothing is drawn."
        )
        return Section("circuit", title, [], numbers, SEED_SAW, text)
    circuit = find_circuit(p)
    scores, curve, n_edges, eap_edges = (circuit.scores, circuit.curve, circuit.n_edges,
                                         circuit.edges)  # fmt: skip
    args = (model, p.clean, p.corrupt, p.metric)
    found = acdc(*args, threshold=ACDC_THRESHOLD, graph=graph)
    eap_faith = float(circuit_faithfulness(*args, [eap_edges], graph=graph)[0])
    shared = {str(e) for e in eap_edges} & {str(e) for e in found.edges}
    numbers |= {
        "n_edges": n_edges,
        "faithfulness": round_value(eap_faith) if n_edges is not None else None,
        "curve": {
            "sizes": curve.sizes.tolist(),
            "faithfulness": [round_value(v) for v in curve.faithfulness],
        },
        "eap_ig_edges": {str(e): round_value(scores.score(e)) for e in eap_edges},
        "acdc": {
            "threshold": ACDC_THRESHOLD,
            "n_edges": len(found.edges),
            "faithfulness": round_value(found.faithfulness),
            "edges": [str(e) for e in found.edges],
        },
        "shared_edges": sorted(shared),
        "heads": _heads(model, p, eap_edges, found.edges),
    }
    label = f"EAP-IG top {len(eap_edges)}" + ("" if n_edges is not None else " (below target)")
    figures = [
        plot_faithfulness(
            curve,
            target=TARGET,
            title=f"Faithfulness of EAP-IG's top-k edges (exact; {len(graph.edges)} edges in "
            "all): the share of the clean - corrupt logit difference the circuit alone keeps",
        ),
        plot_circuit(scores, eap_edges, title=f"{label} edges, faithfulness {eap_faith:.2f}"),
        plot_circuit(
            found.scores,
            found.edges,
            title=f"ACDC (threshold {ACDC_THRESHOLD}): {len(found.edges)} edges, faithfulness "
            f"{found.faithfulness:.2f} (width: how far removing the edge moved it)",
        ),
    ]
    return Section("circuit", title, figures, numbers, SEED_SAW, _describe(numbers, p.final))


def _heads(model: HookedDecisionTransformer, p: Pairs, eap_edges: list, acdc_edges: list) -> dict:
    """The heads each method implicates: circuit senders, and the top heads by patching."""
    z = activation_patching(model, p.clean, p.corrupt, p.metric, "z", ("layer", "head"),
                            show_progress=False)  # fmt: skip
    direct = path_patching_sweep(model, p.clean, p.corrupt, "logits", p.metric,
                                 show_progress=False)  # fmt: skip

    def top(values: torch.Tensor) -> dict[str, float]:
        flat = [(f"L{lay}H{h}", float(values[lay, h])) for lay in range(values.shape[0])
                for h in range(values.shape[1])]  # fmt: skip
        best = sorted(flat, key=lambda kv: -abs(kv[1]))[:3]
        return {name: round_value(value) for name, value in best}

    def senders(edges: list) -> list[str]:
        return sorted({str(e.sender) for e in edges if isinstance(e.sender, Head)})

    return {
        "eap_ig_circuit": senders(eap_edges),
        "acdc_circuit": senders(acdc_edges),
        "activation_patching_z": top(z.values),
        "path_patching_to_logits": top(direct.values),
    }


def _describe(n: dict, final: str) -> str:
    """The section's summary, written from its numbers."""
    a, heads = n["acdc"], n["heads"]
    text = ""
    if n["instruction_gap"] < n["min_gap"]:
        text = (
            f"The swap moves the decision at {final} by only {n['instruction_gap']:.3f} logits on "
            f"average (under {n['min_gap']:g}): faithfulness below is a share of almost nothing, "
            "so this circuit describes noise, not how the model uses the instruction. "
        )
    if n["n_edges"] is None:
        best = max(n["curve"]["faithfulness"][:-1], default=0.0)
        text += (
            f"No top-k set of EAP-IG's edges short of the whole graph keeps {n['target']:.0%} of "
            f"the clean - corrupt logit difference at {final} (best {best:.2f}): EAP-IG's ranking "
            "does not isolate a circuit here. "
        )
    else:
        text += (
            f"EAP-IG's top {n['n_edges']} of {n['n_edges_total']} edges keep "
            f"{n['faithfulness']:.2f} of the clean - corrupt logit difference at {final} "
            f"(exact faithfulness, mean over {len(n['layouts'])} layouts). "
        )
    text += (
        f"ACDC keeps {a['n_edges']} edges with faithfulness {a['faithfulness']:.2f}; "
        f"{len(n['shared_edges'])} edges are in both circuits. Heads in the EAP-IG circuit: "
        f"{', '.join(heads['eap_ig_circuit']) or 'none'}; in ACDC's: "
        f"{', '.join(heads['acdc_circuit']) or 'none'}. Activation patching (z) singles out "
        f"{_list(heads['activation_patching_z'])}; path patching (head -> logits) "
        f"{_list(heads['path_patching_to_logits'])}."
    )
    return text


def _list(table: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:+.2f}" for k, v in table.items())
