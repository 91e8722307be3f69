"""The public API is explicit and pinned: adding or removing a name is a deliberate act."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import dtlens

EXPECTED = {
    "BatchError",
    "CheckpointError",
    "ConfigError",
    "DTConfig",
    "DTLensError",
    "HookNameError",
    "HookedDecisionTransformer",
    "ObservationError",
    "PatchingResult",
    "TrajectoryBatch",
    "__version__",
    "acdc",
    "activation_patching",
    "attribution_patching",
    "congruence",
    "convert_original",
    "decode_observation",
    "direct_logit_attribution",
    "edge_attribution_patching",
    "edge_patching",
    "encode_observation",
    "faithfulness_curve",
    "flip_targets",
    "from_hf",
    "load",
    "logit_diff",
    "logit_lens",
    "patch_observation",
    "path_patching",
    "path_patching_sweep",
    "plot_attention",
    "plot_calibration",
    "plot_congruence",
    "plot_patching",
    "restored_logit_diff",
    "save",
    "set_cell",
    "set_rtg",
    "swap_instruction",
}


def test_all_is_pinned():
    assert set(dtlens.__all__) == EXPECTED
    for name in dtlens.__all__:
        assert hasattr(dtlens, name), name


def test_lazy_names_are_the_subpackages_objects():
    """The model/analysis/plotting names at the top level are the very objects of their
    modules."""
    for name, module in dtlens._LAZY.items():
        assert getattr(dtlens, name) is getattr(importlib.import_module(module), name), name
    assert set(dtlens._LAZY) <= set(dir(dtlens))
    assert set(dtlens.__all__) - set(dtlens._LAZY) == {
        "BatchError",
        "CheckpointError",
        "ConfigError",
        "DTConfig",
        "DTLensError",
        "HookNameError",
        "ObservationError",
        "__version__",
    }  # imported with dtlens: the errors and the (torch-free) config only


def test_type_checkers_see_every_lazy_name():
    """The ``if TYPE_CHECKING:`` imports of dtlens/__init__.py (what type checkers and
    documentation tools read) are exactly the lazily imported names, from their modules."""
    tree = ast.parse(Path(dtlens.__file__).read_text())
    (block,) = [
        n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"
    ]
    imported = {
        alias.name: node.module
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert set(imported) == set(dtlens._LAZY)


def test_import_dtlens_is_light():
    """`import dtlens` imports no torch, TransformerLens, plotly or dash (nor gymnasium)."""
    heavy = ("torch", "transformer_lens", "plotly", "dash", "gymnasium", "numpy")
    code = f"import sys, dtlens; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import dtlens imported {out.stdout.strip()}"


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        dtlens.nope  # noqa: B018


def test_import_has_no_environment_side_effect():
    """`import dtlens` does not register gym environments; `import dtlens.env` does."""
    code = (
        "import gymnasium, dtlens; "
        "ids = set(gymnasium.registry); "
        "assert 'MiniGrid-MemoryS7FixedStart-v0' not in ids, 'registered on import dtlens'; "
        "import dtlens.env; "
        "assert 'MiniGrid-MemoryS7FixedStart-v0' in gymnasium.registry"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
