"""The activation-patching section's words: its summary and its judgements, from its numbers.

Split from :mod:`dtlens.report.sections.patching` (which re-exports these names): the
thresholds, the seed's picture (:func:`seed_pattern`), the RTG "collection"
(:func:`best_token_is_small`), the warning for a model blind to the instruction
(:func:`instruction_blind_caveat`) and the summary (:func:`describe`), all plain
functions of the section's JSON numbers, so the verdict box
(:mod:`dtlens.report.verdict`) judges with the same rules.
"""

from __future__ import annotations

from dtlens.plotting import patching as patching_plots

__all__ = [
    "ONE_TOKEN",
    "best_token_is_small",
    "describe",
    "instruction_blind_caveat",
    "seed_pattern",
]

#: A single token restoring less than this fraction is a small share of the effect.
ONE_TOKEN = 0.2


def best_token_is_small(tokens: dict[str, float]) -> bool:
    """No single RTG token restores :data:`ONE_TOKEN` or more at layer 0 (and there is one)."""
    return bool(tokens) and max(abs(v) for v in tokens.values()) < ONE_TOKEN


def seed_pattern(summary: dict, final: str) -> bool:
    """The seed's picture: restoration at S_final from layer 1 on, none in between."""
    return (
        summary["handoff_layer"] == 1
        and all(p == final for p in summary["peak_by_layer"][1:])
        and summary["most_between"] < ONE_TOKEN
    )


def instruction_blind_caveat(
    gaps: list[float], instr: str, final: str, min_gap: float | None = None
) -> str:
    """A leading warning when no clean/corrupt gap reaches ``min_gap`` logits (None:
    :data:`dtlens.plotting.patching.MIN_GAP`, read at call time).

    Restored fractions divide by ``clean - corrupt``; when the edit barely moves the
    decision they are ratios of noise, and the reader must be told before the numbers.

    Examples:
        >>> instruction_blind_caveat([0.002, -0.001], "S5", "S9")[:40]
        'The instruction swap moves the decision '
        >>> instruction_blind_caveat([3.1], "S5", "S9")
        ''
    """
    largest = max((abs(g) for g in gaps), default=0.0)
    min_gap = patching_plots.MIN_GAP if min_gap is None else min_gap
    if largest >= min_gap:
        return ""
    return (
        f"The instruction swap moves the decision at {final} by at most {largest:.3f} logits "
        f"(under {min_gap:g}): this model does not use the instruction it sees at {instr}, "
        "so the restored fractions below divide by almost nothing and describe no circuit "
        "(their figures are greyed out). "
    )


def describe(n: dict) -> str:
    """The section's summary, written from its numbers."""
    instr, final, min_gap = n["instruction_token"], n["final_token"], n["min_gap"]
    gaps = [r["clean_logit_diff"] - r["corrupt_logit_diff"] for r in n["instruction_swap_pairs"]]
    caveat = instruction_blind_caveat(gaps, instr, final, min_gap)
    parts = [caveat.strip()] if caveat else []
    for rtg in n["rtgs"]:
        rows = [r for r in n["instruction_swap_pairs"] if r["rtg"] == rtg]
        m = n["instruction_swap_mean"][f"RTG {rtg:g}"]
        flips = ", ".join(
            f"{r['layout']} {r['clean_logit_diff']:+.2f} -> {r['corrupt_logit_diff']:+.2f}"
            for r in rows
        )
        gap = n["instruction_swap_gap"][f"RTG {rtg:g}"]
        if gap < min_gap:
            parts.append(
                f"Instruction swap at RTG {rtg:g} ({flips}): the decision moves by {gap:.3f} "
                f"logits on average (under {min_gap:g}), so the restored fractions at this RTG "
                "are ratios of noise: greyed out, and no circuit is read from them."
            )
            continue
        peaks = ", ".join(
            f"layer {k} {p} ({v:.2f})"
            for k, (p, v) in enumerate(
                zip(m["peak_by_layer"], m["peak_value_by_layer"], strict=True)
            )
        )
        handoff = m["handoff_layer"]
        moved = (
            f"restoration moves from {instr} to {final} at layer {handoff}"
            if handoff is not None
            else f"restoration never sits more at {final} than at {instr} before the last layer"
        )
        parts.append(
            f"Instruction swap at RTG {rtg:g} (left - right logit difference, clean -> corrupt: "
            f"{flips}): the residual stream restores most at {peaks} (mean over layouts); "
            f"{moved}, and no token between restores more than {m['most_between']:.2f}"
            + (
                f": as the seed saw, the instruction moves from {instr} straight to {final}. "
                if seed_pattern(m, final) and not caveat
                else f": unlike the seed, not a direct move from {instr} to {final}. "
            )
            + f"Top heads: {', '.join(m['top_heads'])}; MLPs at {final} by layer: "
            + ", ".join(f"{v:.2f}" for v in m["mlp_at_final_by_layer"])
            + "."
        )
    r = n["rtg_change_mean"]
    change = n["rtg_change"]
    tokens = r["layer0_rtg_tokens"]
    if n["rtg_change_gap"] < min_gap:
        parts.append(
            f"RTG change (clean {change['clean_rtg']:g}, corrupt {change['corrupt_rtg']:g} at "
            f"every position): the decision moves by {n['rtg_change_gap']:.3f} logits on average "
            f"(under {min_gap:g}), so its restored fractions are ratios of noise (greyed out); "
            f"the seed's collection into {final} through MLP1 cannot be checked here."
        )
    else:
        collected = best_token_is_small(tokens) and r["at_final_by_layer"][-1] > 0.5
        best = max(tokens, key=lambda k: abs(tokens[k])) if tokens else None
        mlps = r["mlp_at_final_by_layer"]
        parts.append(
            f"RTG change (clean {change['clean_rtg']:g}, corrupt {change['corrupt_rtg']:g} at "
            "every position; logit difference clean -> corrupt: "
            + ", ".join(
                f"{row['layout']} {row['clean_logit_diff']:+.2f} -> "
                f"{row['corrupt_logit_diff']:+.2f}"
                for row in n["rtg_change_pairs"]
            )
            + "): "
            + (
                f"at layer 0 the largest single RTG token is {best} ({tokens[best]:+.2f}); "
                if best
                else ""
            )
            + f"{final}'s residual stream restores "
            + ", ".join(f"{v:.2f}" for v in r["at_final_by_layer"])
            + f" by layer, and the MLPs' outputs at {final} restore "
            + ", ".join(f"MLP{k} {v:.2f}" for k, v in enumerate(mlps))
            + " (the seed: MLP1 0.87, MLP2 nothing)"
            + (
                f", so the RTG is collected from many tokens into {final} rather than read "
                "from one."
                if collected
                else "."
            )
        )
    if n["weak_pairs"]:
        parts.append(
            f"Weak pairs (|clean - corrupt| < {min_gap:g} logits, fractions noisy, greyed out): "
            + ", ".join(n["weak_pairs"])
            + "."
        )
    return " ".join(parts)
