"""Causal scrubbing on the shipped MemoryDT and the original checkpoint.

The claim under test: "the instruction reaches the decision only through the layer-0
head the circuit found (L0H1 in both models), and everything else needs only the upper
target and the RTG". The original checkpoint keeps > 85 % of the decision's logit
difference under it; the shipped model keeps almost none, but keeps most once L0H1 may
carry the upper target too (its output already depends on the layout). The controls
(the claim through a head the circuit does not use) keep nothing.

Independent expectations: the section's numbers equal direct calls of the public API;
on the original checkpoint, "L0H1 carries only the instruction" equals patching L0H1's
``hook_z`` from the drawn inputs with TransformerLens hooks, and the identity and empty
hypotheses equal the clean and the random inputs' runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import dtlens
from dtlens.analysis.scrubbing import (
    Hypothesis,
    Scrubber,
    decision_metric,
    memory_dataset,
    through_heads,
)
from dtlens.model.checkpoint import WEIGHTS_FILE
from dtlens.report.config import ReportConfig
from dtlens.report.sections import scrubbing
from tests.conftest import ORIGINAL_DT, requires_shared

SHIPPED = Path(dtlens.__file__).resolve().parent / "pretrained" / "memorydt"
requires_shipped = pytest.mark.skipif(
    not (SHIPPED / WEIGHTS_FILE).exists(), reason=f"the shipped MemoryDT is not built ({SHIPPED})"
)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shipped():
    model = dtlens.load("memorydt").eval()
    return model, scrubbing.run(model, ReportConfig())


@pytest.fixture(scope="module")
def original():
    model = dtlens.load(ORIGINAL_DT).eval()
    return model, scrubbing.run(model, ReportConfig())


@requires_shipped
def test_shipped_l0h1_carries_the_instruction_with_the_layout(shipped):
    _, section = shipped
    n, r = section.numbers, section.numbers["recovered"]
    assert n["circuit"]["layer0_heads"] == ["L0H1"] and n["circuit"]["source"] == "circuit"
    assert r["identity"] == pytest.approx(1.0, abs=1e-3) and r["empty"] == pytest.approx(
        0, abs=1e-3
    )
    assert r["instruction_via_circuit_heads"] < 0.3
    assert r["instruction_and_top_via_circuit_heads"] > 0.7
    assert r["control"] < 0.3 and n["circuit"]["control_head"] != "L0H1"
    assert "fails" in section.this_model


@requires_shipped
def test_shipped_numbers_are_the_public_api_s(shipped):
    model, section = shipped
    n = section.numbers
    data = memory_dataset(model, rtgs=(0.9, 0.0))
    metric = decision_metric(model, data)
    scrubber = Scrubber(model, data, metric)
    g, heads = scrubber.graph, n["circuit"]["layer0_heads"]
    expected = {
        "identity": Hypothesis.identity(),
        "empty": Hypothesis.empty(),
        "instruction_via_circuit_heads": through_heads(g, heads),
        "instruction_and_top_via_circuit_heads": through_heads(g, heads, ("instruction", "top")),
        "circuit_edges_only": Hypothesis.from_edges(n["circuit"]["edges"]),
        "control": through_heads(g, [n["circuit"]["control_head"]]),
    }
    assert list(n["recovered"]) == list(expected)
    for key, hypothesis in expected.items():
        result = scrubber.run(hypothesis, n_samples=scrubbing.N_SAMPLES, seed=0)
        assert n["recovered"][key] == pytest.approx(result.recovered, abs=2e-4), key
        assert n["stderr"][key] == pytest.approx(result.stderr, abs=2e-4), key
    assert n["clean"] == pytest.approx(result.clean, abs=2e-4)


@requires_shared(ORIGINAL_DT)
def test_original_holds_and_the_controls_do_not(original):
    _, section = original
    n, r = section.numbers, section.numbers["recovered"]
    assert n["circuit"]["layer0_heads"] == ["L0H1"]
    circuit = {"state_embed->L0H1.v", "L0H1->MLP0.in", "L0H1->MLP1.in", "MLP0->MLP1.in",
               "MLP1->logits"}  # fmt: skip
    assert set(n["circuit"]["edges"]) == circuit
    assert r["instruction_via_circuit_heads"] > 0.85
    assert r["instruction_and_top_via_circuit_heads"] > 0.85
    assert r["control"] < 0.2 and r["circuit_edges_only"] < 0.2
    assert "holds" in section.this_model


@requires_shared(ORIGINAL_DT)
def test_original_against_hooks(original):
    model, _ = original
    data = memory_dataset(model, rtgs=(0.9, 0.0))
    metric = decision_metric(model, data)
    scrubber = Scrubber(model, data, metric)
    only = through_heads(scrubber.graph, ["L0H1"], rest="identity")
    result = scrubber.run(only, n_samples=8, seed=1)
    ref, x1 = result.draws["reference"], result.draws["claim 0"]
    _, source = model.run_with_cache(data.batch[x1], names_filter=["blocks.0.attn.hook_z"])

    def patch(z, hook):
        z = z.clone()
        z[:, :, 1] = source["blocks.0.attn.hook_z"][:, :, 1]
        return z

    with torch.no_grad():
        patched = model.run_with_hooks(data.batch[ref], fwd_hooks=[("blocks.0.attn.hook_z", patch)])
        assert torch.allclose(result.values, metric(patched, ref), atol=1e-4)
        assert result.recovered > 0.9
        clean = metric(model(data.batch[ref]), ref)
        assert torch.allclose(scrubber.run(Hypothesis.identity(), 8, 1).values, clean, atol=1e-4)
        empty = scrubber.run(Hypothesis.empty(), 8, 1)
        rand = empty.draws["random"]
        assert torch.allclose(empty.values, metric(model(data.batch[rand]), ref), atol=1e-4)
