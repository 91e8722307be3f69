"""dtlens: TransformerLens-native mechanistic interpretability of decision transformers.

The public API is the names in ``__all__`` (pinned by ``tests/unit/test_public_api.py``):
the model, its checkpoints and conversions (``from_hf`` for HuggingFace decision
transformers), the observation encoding, and the analysis API of
DESIGN.md with its main plots. The subpackages (``dtlens.analysis``,
``dtlens.plotting``, ``dtlens.env``, ``dtlens.data``, ``dtlens.training``) hold the rest.

Importing dtlens is light and has no side effects: only the errors and ``DTConfig``
are imported with it; the model, its checkpoints, the analysis and plotting names are
imported on first use (PEP 562 ``__getattr__``), so ``import dtlens`` loads neither
torch nor TransformerLens, plotly or dash. Only ``import dtlens.env`` (which the
analysis API needs, for its scenarios) registers the MiniGrid environments with
gymnasium.

Examples:
    >>> import dtlens
    >>> model = dtlens.load("memorydt")  # doctest: +SKIP
    >>> logits, cache = model.run_with_cache(batch)  # doctest: +SKIP
    >>> from dtlens import activation_patching, patch_observation, swap_instruction
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dtlens.errors import (
    BatchError,
    CheckpointError,
    ConfigError,
    DTLensError,
    HookNameError,
    ObservationError,
)
from dtlens.lazy import lazy_attributes
from dtlens.model.config import DTConfig

if TYPE_CHECKING:  # the lazily imported names, for type checkers and documentation tools
    from dtlens.analysis import (
        PatchingResult,
        acdc,
        activation_patching,
        attribution_patching,
        congruence,
        direct_logit_attribution,
        edge_attribution_patching,
        edge_patching,
        faithfulness_curve,
        flip_targets,
        logit_diff,
        logit_lens,
        patch_observation,
        path_patching,
        path_patching_sweep,
        restored_logit_diff,
        set_cell,
        set_rtg,
        swap_instruction,
    )
    from dtlens.env.encoding import decode_observation, encode_observation
    from dtlens.model.batch import TrajectoryBatch
    from dtlens.model.checkpoint import load, save
    from dtlens.model.convert import convert_original
    from dtlens.model.hf.convert import from_hf
    from dtlens.model.hooked_dt import HookedDecisionTransformer
    from dtlens.plotting import plot_attention, plot_calibration, plot_congruence, plot_patching

__version__ = "0.1.0"

#: top-level name -> the module it is imported from on first use
_LAZY: dict[str, str] = {
    **dict.fromkeys(
        (
            "PatchingResult",
            "activation_patching",
            "acdc",
            "attribution_patching",
            "congruence",
            "direct_logit_attribution",
            "edge_attribution_patching",
            "edge_patching",
            "faithfulness_curve",
            "flip_targets",
            "logit_diff",
            "logit_lens",
            "patch_observation",
            "path_patching",
            "path_patching_sweep",
            "restored_logit_diff",
            "set_cell",
            "set_rtg",
            "swap_instruction",
        ),
        "dtlens.analysis",
    ),
    **dict.fromkeys(("decode_observation", "encode_observation"), "dtlens.env.encoding"),
    "HookedDecisionTransformer": "dtlens.model.hooked_dt",
    "TrajectoryBatch": "dtlens.model.batch",
    **dict.fromkeys(("load", "save"), "dtlens.model.checkpoint"),
    "convert_original": "dtlens.model.convert",
    "from_hf": "dtlens.model.hf.convert",
    **dict.fromkeys(
        ("plot_attention", "plot_calibration", "plot_congruence", "plot_patching"),
        "dtlens.plotting",
    ),
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


__all__ = [
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
]
