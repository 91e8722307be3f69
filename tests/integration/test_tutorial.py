"""docs/tutorial.py runs end to end, writes its figures, and its numbers hold up.

The tutorial page (docs/tutorial.md) includes the script piece by piece, so running the
script here keeps the page honest. It runs on a tiny random decision transformer saved
with ``dtlens.save`` (the MemoryDT's 9-step window, 2 layers of width 32): seconds, no
shipped model needed.
"""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import pytest
import torch

import dtlens
from tests.conftest import build_model

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "docs" / "tutorial.py"
PAGE = REPO / "docs" / "tutorial.md"
FIGURES = {
    "preferences_rtg_0.9",
    "patching_resid_pre",
    "patching_attn_out",
    "patching_mlp_out",
    "patching_heads",
    "patching_rtg_mlp_out",
    "path_patching_queries",
    "congruence",
    "attention_L0H0",
    "attention_L0H0_rtg",
    "dla",
    "logit_lens",
}


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, Path]:
    """Run the script as ``python docs/tutorial.py MODEL OUT``; return its globals."""
    root = tmp_path_factory.mktemp("tutorial")
    model_dir = dtlens.save(build_model(n_ctx=26), root / "model")
    out = root / "figures"
    argv = sys.argv
    sys.argv = [str(SCRIPT), str(model_dir), str(out)]
    try:
        with torch.enable_grad():  # the script turns autograd off; restore it afterwards
            namespace = runpy.run_path(str(SCRIPT), run_name="__main__")
    finally:
        sys.argv = argv
    return namespace, model_dir, out


def test_writes_every_figure_as_offline_html(tutorial):
    _, _, out = tutorial
    assert {p.stem for p in out.glob("*.html")} == FIGURES
    assert (out / "plotly.min.js").stat().st_size > 1_000_000
    for name in FIGURES:
        html = (out / f"{name}.html").read_text()
        assert 'src="plotly.min.js"' in html, name
        assert "Plotly.newPlot" in html, name


def test_numbers_match_a_plain_forward(tutorial):
    """The tutorial's clean/corrupt metrics and DLA agree with logits read off by hand."""
    ns, model_dir, _ = tutorial
    model = dtlens.load(model_dir)
    pair = ns["pair"]
    with torch.no_grad():
        clean_logits, corrupt_logits = model(pair.clean), model(pair.corrupt)
    a, b = pair.answer_action, pair.wrong_action
    clean = clean_logits[:, -1, a] - clean_logits[:, -1, b]  # S9 is the last token
    corrupt = corrupt_logits[:, -1, a] - corrupt_logits[:, -1, b]
    result = ns["result"]
    torch.testing.assert_close(result.info["clean_metric"], clean, atol=1e-5, rtol=0)
    torch.testing.assert_close(result.info["corrupt_metric"], corrupt, atol=1e-5, rtol=0)
    torch.testing.assert_close(ns["dla"].total(), clean, atol=1e-4, rtol=0)
    torch.testing.assert_close(ns["lens"].values[-1], clean_logits[:, -1], atol=1e-4, rtol=0)


def test_patching_result_obeys_the_instruction_swap(tutorial):
    """Only S5 shows the instruction, so at layer 0 only S5's residual carries the swap:
    patching it restores the clean run exactly, patching any other position nothing."""
    ns, _, _ = tutorial
    result = ns["result"]
    changed = (ns["pair"].clean.obs != ns["pair"].corrupt.obs).flatten(2).any(-1)[0]
    assert changed.nonzero().flatten().tolist() == [4]  # step 5 of 9
    layer0 = dict(zip(result.labels["pos"], result.values[0].tolist(), strict=True))
    assert layer0.pop("S5") == pytest.approx(1.0, abs=1e-4)
    assert max(abs(v) for v in layer0.values()) < 1e-4


def test_page_includes_every_section_of_the_script():
    """Each ``--8<-- "docs/tutorial.py:NAME"`` in the page has a section in the script, and
    every section of the script is shown on the page."""
    script = SCRIPT.read_text()
    starts = re.findall(r"# --8<-- \[start:(\w+)\]", script)
    ends = re.findall(r"# --8<-- \[end:(\w+)\]", script)
    assert starts == ends and len(set(starts)) == len(starts)
    used = re.findall(r'--8<-- "docs/tutorial\.py:(\w+)"', PAGE.read_text())
    assert sorted(used) == sorted(starts)
