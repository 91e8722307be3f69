"""The path-patching report section: its numbers against direct path_patching calls.

The section is run once on a tiny random 9-step model; every number it reports is
recomputed here from the public API (``instruction_swap_pair``, ``path_patching``,
``run_with_cache``), with the clean/corrupt pairs, token labels and receiver lists
written out independently of the section's helpers.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go
import pytest
import torch

from dtlens.analysis.circuits.nodes import Embed, Head
from dtlens.analysis.circuits.path_patching import path_patching
from dtlens.analysis.edits.scenarios import instruction_swap_pair
from dtlens.analysis.metrics import logit_diff, make_logit_diff_metric
from dtlens.env import SCENARIOS
from dtlens.errors import ObservationError
from dtlens.model import TrajectoryBatch
from dtlens.report import SECTIONS
from dtlens.report.config import ReportConfig
from dtlens.report.sections import path_patching as section_module
from tests.conftest import build_model

RTG = 0.9
N_LAYERS, N_HEADS = 2, 4
BETWEEN = ["A5", "R6", "S6", "A6", "R7", "S7", "A7", "R8", "S8", "A8", "R9"]
# every later reader of a layer-0 head: layer-1 heads' q/k/v and both MLPs' inputs
READERS = [f"L1H{h}.{k}" for h in range(N_HEADS) for k in "qkv"] + ["MLP0", "MLP1"]
TOL = 1.5e-4  # the section rounds to 4 decimals


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(n_ctx=26)  # 9 steps, like MemoryDT


@pytest.fixture(scope="module")
def section(model):
    return section_module.run(model, ReportConfig(high_rtg=RTG))


@pytest.fixture(scope="module")
def pair():
    pairs = [instruction_swap_pair(s.name, n_steps=9, rtg=RTG, padding="mask") for s in SCENARIOS]
    clean = TrajectoryBatch.cat([p.clean for p in pairs])
    corrupt = TrajectoryBatch.cat([p.corrupt for p in pairs])
    return clean, corrupt, make_logit_diff_metric("left", "right")


def _pp(model, pair, senders, receivers, **kwargs) -> float:
    clean, corrupt, metric = pair
    return float(path_patching(model, clean, corrupt, senders, receivers, metric, **kwargs))


def test_registered_after_activation_patching():
    assert SECTIONS.index("path_patching") == SECTIONS.index("patching") + 1


def test_key_tokens_are_the_seeds_s5_and_s9(section):
    n = section.numbers
    assert (n["instruction_token"], n["final_token"]) == ("S5", "S9")
    assert n["intermediate_tokens"] == BETWEEN
    assert n["layouts"] == [s.name for s in SCENARIOS]


def test_clean_and_corrupt_logit_diffs(model, section, pair):
    clean, corrupt, _ = pair
    with torch.no_grad():
        for batch, key in ((clean, "clean_logit_diff"), (corrupt, "corrupt_logit_diff")):
            expected = logit_diff(model(batch), "left", "right")
            got = [section.numbers[key][s.name] for s in SCENARIOS]
            assert got == pytest.approx(expected.tolist(), abs=TOL)


def test_heads_to_logits_equal_path_patching(model, section, pair):
    table = section.numbers["heads_to_logits"]
    assert len(table) == N_LAYERS * N_HEADS
    for layer in range(N_LAYERS):
        for head in range(N_HEADS):
            expected = _pp(model, pair, Head(layer, head), "logits")
            assert table[f"L{layer}H{head}"] == pytest.approx(expected, abs=TOL)
            # only the write at S9 can reach the logits at S9
            at_final = _pp(model, pair, Head(layer, head, ("S9",)), "logits")
            assert table[f"L{layer}H{head}"] == pytest.approx(at_final, abs=TOL)
    assert any(abs(v) > 0.01 for v in table.values())  # not all trivially zero


def test_heads_via_mlps_equal_freeze_mode(model, section, pair):
    table = section.numbers["heads_at_final_via_mlps"]
    for layer in range(N_LAYERS):
        for head in range(N_HEADS):
            expected = _pp(model, pair, Head(layer, head, ("S9",)), "logits", mode="freeze")
            assert table[f"L{layer}H{head}"] == pytest.approx(expected, abs=TOL)


def test_layer0_routes_equal_grouped_path_patching(model, section, pair):
    group = section.numbers["l0_to_readers"]
    for key, pos in (
        ("instruction_token", ("S5",)),
        ("intermediate_tokens", tuple(BETWEEN)),
        ("final_token", ("S9",)),
        ("all_tokens", None),
    ):
        expected = _pp(model, pair, [Head(0, h, pos) for h in range(N_HEADS)], READERS)
        assert group[key] == pytest.approx(expected, abs=TOL), key
    ratio = abs(group["intermediate_tokens"]) / max(
        abs(group["instruction_token"]), abs(group["final_token"])
    )
    assert section.numbers["intermediate_over_one_hop"] == pytest.approx(ratio, rel=1e-3)
    assert section.numbers["claim_holds"] == (ratio < section_module.ONE_HOP_RATIO)


def test_layer0_by_token(model, section, pair):
    by_token = section.numbers["l0_to_readers_by_token"]
    labels = list(by_token)
    assert labels == model.token_labels(pair[0])
    # causal attention: layer-0 writes before S5 are the same in clean and corrupt
    assert all(by_token[label] == 0.0 for label in labels[: labels.index("S5")])
    for label in ("S5", "A5", "S9"):
        expected = _pp(model, pair, [Head(0, h, (label,)) for h in range(N_HEADS)], READERS)
        assert by_token[label] == pytest.approx(expected, abs=TOL)


def test_per_head_routes_equal_single_head_calls(model, section, pair):
    routes = section.numbers["heads_to_readers"]
    assert set(routes) == {"instruction_token", "intermediate_tokens", "final_token"}
    receivers_of = {0: READERS, 1: ["MLP1"]}  # what each layer's heads reach
    for layer, head in ((0, 1), (1, 2)):
        expected = _pp(model, pair, Head(layer, head, tuple(BETWEEN)), receivers_of[layer])
        got = routes["intermediate_tokens"][f"L{layer}H{head}"]
        assert got == pytest.approx(expected, abs=TOL)


def test_instruction_embedding_reads(model, section, pair):
    reads = section.numbers["instruction_embed_to_heads"]
    for kind, layer, head in (("v", 0, 2), ("k", 1, 3), ("q", 0, 0)):
        expected = _pp(model, pair, Embed("state", ("S5",)), f"L{layer}H{head}.{kind}")
        assert reads[kind][f"L{layer}H{head}"] == pytest.approx(expected, abs=TOL)
    assert all(math.isfinite(v) for table in reads.values() for v in table.values())


def test_attention_from_final_to_instruction(model, section, pair):
    with torch.no_grad():
        _, cache = model.run_with_cache(pair[0])
    got = section.numbers["attention_final_to_instruction"]
    for layer in range(N_LAYERS):
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"]  # [batch, head, query, key]
        for head in range(N_HEADS):
            expected = float(pattern[:, head, 25, 13].mean())  # S9 is token 25, S5 token 13
            assert got[f"L{layer}H{head}"] == pytest.approx(expected, abs=TOL)


def test_section_renders(section):
    assert section.key == "path_patching"
    assert len(section.figures) == 4
    assert all(isinstance(f, go.Figure) and f.data for f in section.figures)
    assert section.seed_saw and "S5" in section.this_model and "S9" in section.this_model
    section.to_json()  # every number finite


def _greyed(figure: go.Figure) -> bool:
    """Every colour scale of the figure grey, bars grey, and the warning inside it."""
    scales = [t.colorscale for t in figure.data if t.type == "heatmap" and t.colorscale]
    if figure.layout.coloraxis.colorscale:
        scales.append(figure.layout.coloraxis.colorscale)
    bars = [c for t in figure.data if t.type == "bar" for c in t.marker.color]
    grey = all(len({c[1:3], c[3:5], c[5:7]}) == 1 for scale in scales for _, c in scale)
    grey = grey and all(len({c[1:3], c[3:5], c[5:7]}) == 1 for c in bars)
    warned = any("Greyed out" in a.text for a in figure.layout.annotations)
    return bool(scales or bars) and grey and warned


def test_a_weak_instruction_gap_greys_every_figure(model, section, pair):
    """The tiny random model barely uses the instruction: its layouts are kept (gap above
    MIN_GAP) but differ by far less than ReportConfig.min_gap, so every figure is
    greyed out and the claim cannot be judged."""
    clean, corrupt, metric = pair
    with torch.no_grad():
        gap = float((metric(model(clean)) - metric(model(corrupt))).abs().mean())
    n = section.numbers
    assert n["min_gap"] == ReportConfig().min_gap == 0.5
    assert n["instruction_gap"] == pytest.approx(gap, abs=TOL) and gap < 0.5
    assert all(_greyed(f) for f in section.figures)
    assert "the claim cannot be judged" in section.this_model
    loose = section_module.run(model, ReportConfig(high_rtg=RTG, min_gap=gap / 2))
    assert not any(_greyed(f) for f in loose.figures)
    assert "the claim cannot be judged" not in loose.this_model


def test_one_layer_model():
    model = build_model(n_layers=1, n_ctx=26)
    numbers = section_module.run(model, ReportConfig()).numbers
    assert set(numbers["heads_at_final_via_mlps"]) == {f"L0H{h}" for h in range(N_HEADS)}
    # the only reader after a layer-0 head is MLP0, at the head's own token
    assert numbers["l0_to_readers"]["intermediate_tokens"] == pytest.approx(0.0, abs=1e-4)


def test_short_context_is_a_clear_error():
    model = build_model()  # 4 steps: the window no longer shows the instruction
    with pytest.raises(ObservationError, match="instruction"):
        section_module.run(model, ReportConfig())


def test_layouts_with_a_small_gap_are_left_out(model, pair, monkeypatch):
    clean, corrupt, metric = pair
    with torch.no_grad():
        gap = (metric(model(clean)) - metric(model(corrupt))).abs()
    kept = [i for i in range(4) if gap[i] >= 0.999 * gap.max()]
    assert 0 < len(kept) < 4  # mirror layouts share a gap; the others are smaller
    monkeypatch.setattr(section_module, "MIN_GAP_SHARE", 0.999)
    numbers = section_module.run(model, ReportConfig(high_rtg=RTG)).numbers
    assert numbers["layouts"] == [SCENARIOS[i].name for i in kept]
    assert numbers["left_out_layouts"] == [s.name for i, s in enumerate(SCENARIOS) if i not in kept]
    assert len(numbers["clean_logit_diff"]) == 4  # still reported for every layout
    subset = (clean[kept], corrupt[kept], metric)
    assert numbers["heads_to_logits"]["L1H0"] == pytest.approx(
        _pp(model, subset, Head(1, 0), "logits"), abs=TOL
    )


def test_a_model_blind_to_the_instruction_gets_no_patching():
    model = build_model(n_ctx=26)
    with torch.no_grad():
        model.state_embed.weight.zero_()  # every observation embeds to the same vector
    section = section_module.run(model, ReportConfig())
    assert section.figures == []
    assert section.numbers["layouts"] == []
    assert len(section.numbers["left_out_layouts"]) == 4
    assert "ignores the instruction" in section.this_model
    section.to_json()
