"""The public API is explicit and pinned: adding or removing a name is a deliberate act."""

from __future__ import annotations

import subprocess
import sys

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
    "TrajectoryBatch",
    "__version__",
    "convert_original",
    "load",
    "save",
}


def test_all_is_pinned():
    assert set(dtlens.__all__) == EXPECTED
    for name in dtlens.__all__:
        assert hasattr(dtlens, name), name


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
