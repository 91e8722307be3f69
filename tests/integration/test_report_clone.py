"""The ``clone`` report section: a behavioural clone side by side with the DT.

Every number is recomputed here from the public API (greedy rollouts, plain forwards,
``run_with_cache``, ``dtlens.activation_patching``) on tiny models, with the clone
passed explicitly so the tests do not depend on the shipped one; the fallbacks (no
shipped partner, two models of one type) draw nothing.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import torch

import dtlens
from dtlens.analysis.edits.scenarios import model_instruction_pairs
from dtlens.analysis.metrics import make_logit_diff_metric
from dtlens.env import SCENARIOS
from dtlens.model import checkpoint
from dtlens.model.batch import TrajectoryBatch
from dtlens.report import SECTIONS, ReportConfig
from dtlens.report.sections import SECTION_MODULES
from dtlens.report.sections import clone as section
from dtlens.training.progress import success_by_layout
from tests.conftest import build_model

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = ReportConfig(max_steps=12)


@pytest.fixture(scope="module")
def models():
    torch.set_num_threads(1)
    return build_model(n_ctx=26), build_model(model_type="clone", n_ctx=17)


@pytest.fixture(scope="module")
def result(models):
    torch.set_num_threads(1)
    dt, clone = models
    return section.run(dt, CONFIG, clone=clone)


def _recompute(model) -> dict:
    """The section's numbers of one model, from the public API."""
    rtg = CONFIG.high_rtg
    pairs = model_instruction_pairs(model, rtg)
    clean = TrajectoryBatch.cat([p.clean for p in pairs])
    corrupt = TrajectoryBatch.cat([p.corrupt for p in pairs])
    rows = torch.arange(4)
    answer = torch.tensor([p.answer_action for p in pairs])
    wrong = torch.tensor([p.wrong_action for p in pairs])
    with torch.no_grad():
        lc, lx = model(clean)[:, -1], model(corrupt)[:, -1]
    ld_clean = lc[rows, answer] - lc[rows, wrong]
    ld_swap = ld_clean - (lx[rows, answer] - lx[rows, wrong])
    # attention of the decision token (last state) in key/top-key on the instruction state
    labels = model.token_labels(pairs[0].clean)
    last = model.state_positions(pairs[0].clean.n_steps)[-1]
    _, cache = model.run_with_cache(pairs[0].clean)
    attention = {
        f"L{layer}H{h}": cache[f"blocks.{layer}.attn.hook_pattern"][0, h, last]
        for layer in range(model.cfg.n_layers)
        for h in range(model.cfg.n_heads)
    }
    raw = dtlens.activation_patching(
        model,
        clean,
        corrupt,
        make_logit_diff_metric("left", "right", model=model),
        "resid_pre",
        by=("layer", "pos"),
        direction="denoise",
        normalize=False,
        show_progress=False,
    )
    c, x = raw.info["clean_metric"], raw.info["corrupt_metric"]
    restored = ((raw.info["per_pair"] - x) / (c - x)).mean(-1)  # [layer, pos]
    return {
        "success": success_by_layout(model, rtg, max_steps=CONFIG.max_steps),
        "ld": ld_clean,
        "swap": ld_swap,
        "attention": attention,
        "labels": labels,
        "final_label": labels[last],
        "final_restored": restored[:, last],
        "peaks": [raw.labels["pos"][int(k)] for k in restored.argmax(-1)],
    }


def test_the_section_is_registered():
    assert "clone" in SECTIONS and SECTION_MODULES["clone"] is section


@pytest.mark.parametrize("which", ["decision_transformer", "clone"])
def test_numbers_match_the_public_api(models, result, which):
    model = models[0] if which == "decision_transformer" else models[1]
    numbers = result.numbers[which]
    expected = _recompute(model)
    assert numbers["model_type"] == model.cfg.model_type
    assert numbers["success_by_layout"] == expected["success"]
    assert numbers["success"] == pytest.approx(sum(expected["success"].values()) / 4, abs=1e-4)
    names = [s.name for s in SCENARIOS]
    assert list(numbers["decision_logit_diff_by_layout"]) == names
    assert list(numbers["decision_logit_diff_by_layout"].values()) == pytest.approx(
        expected["ld"].tolist(), abs=1e-3
    )
    assert numbers["decision_logit_diff"] == pytest.approx(float(expected["ld"].mean()), abs=1e-3)
    assert numbers["swap_logit_diff"] == pytest.approx(float(expected["swap"].mean()), abs=1e-3)
    instr = expected["labels"].index(numbers["instruction_token"])
    assert numbers["final_token"] == expected["final_label"]
    assert numbers["attention_on_instruction"] == pytest.approx(
        {h: row[instr].item() for h, row in expected["attention"].items()}, abs=1e-3
    )
    assert numbers["patching_at_final_by_layer"] == pytest.approx(
        expected["final_restored"].tolist(), abs=1e-3
    )
    assert [p["token"] for p in numbers["patching_peak_by_layer"]] == expected["peaks"]


def test_the_clone_window_has_no_rtg_and_the_figures_are_drawn(result):
    numbers = result.numbers
    assert numbers["available"] is True and numbers["report_model"] == "decision_transformer"
    assert numbers["clone"]["rtg"] is None and numbers["decision_transformer"]["rtg"] == 0.9
    attention, dt_patch, clone_patch = result.figures
    assert not any(str(x).startswith("R") for x in attention.data[1].x)  # clone: S, A only
    assert any(str(x).startswith("R") for x in attention.data[0].x)
    assert "Behavioural clone" in clone_patch.layout.title.text
    assert "Decision transformer" in dt_patch.layout.title.text
    assert "the clone" in result.this_model and "Greedy success" in result.this_model


def test_a_clone_report_model_is_compared_with_the_dt(models, result):
    dt, clone = models
    swapped = section.run(clone, CONFIG, clone=dt)
    assert swapped.numbers["report_model"] == "clone"
    for key in ("decision_transformer", "clone"):
        assert swapped.numbers[key] == result.numbers[key]


def test_without_a_partner_the_section_says_how_to_build_it(models, result, monkeypatch):
    """No shipped clone: the text says how to build it; only the DT is shown, labelled."""
    monkeypatch.setattr(checkpoint, "SHIPPED_MODELS", {"memorydt-clone": "does-not-exist"})
    out = section.run(models[0], CONFIG)
    assert out.numbers["available"] is False and "clone" not in out.numbers
    assert out.numbers["decision_transformer"] == result.numbers["decision_transformer"]
    assert section.BUILD_COMMAND in out.this_model
    assert "dtlens build-memorydt --model-type clone" in out.numbers["reason"]
    attention = out.figures[0]
    assert len(attention.data) == 1 and "only: no comparison model" in attention.layout.title.text


def test_a_clone_without_a_shipped_dt_is_shown_alone(models, result, monkeypatch):
    monkeypatch.setattr(checkpoint, "SHIPPED_MODELS", {"memorydt": "does-not-exist"})
    out = section.run(models[1], CONFIG)
    assert out.numbers["available"] is False and "decision_transformer" not in out.numbers
    assert out.numbers["clone"] == result.numbers["clone"]
    assert "`dtlens build-memorydt`" in out.this_model


def test_two_models_of_one_type_are_not_compared(models):
    out = section.run(models[0], CONFIG, clone=build_model(n_ctx=26))
    assert out.numbers["available"] is False and len(out.figures[0].data) == 1
    assert "one decision transformer and one clone" in out.this_model


def test_the_shipped_clone_loads_by_name_when_built():
    """``dtlens.load("memorydt-clone")``: a clone whose card matches its config."""
    path = Path(str(resources.files("dtlens") / "pretrained"))
    if not (path / "memorydt-clone" / checkpoint.WEIGHTS_FILE).exists():
        pytest.skip("no shipped clone: build it with `dtlens build-memorydt --model-type clone`")
    model = dtlens.load("memorydt-clone")
    assert model.cfg.model_type == "clone" and model.cfg.n_timesteps == 9
    calibration = model.metadata["calibration"]
    card = (path / "memorydt-clone" / "MODEL_CARD.md").read_text()
    assert ("**met**" in card) is calibration["passed"]
    assert "no RTG calibration" in card
