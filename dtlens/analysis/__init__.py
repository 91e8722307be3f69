"""Analyses of decision transformers: edits, metrics, patching, congruence, attribution, circuits.

Each module holds one analysis; this package re-exports their public names.
"""

from dtlens.analysis.attribution import (
    LogitAttribution,
    ResidualDecomposition,
    direct_logit_attribution,
    logit_lens,
    residual_decomposition,
)
from dtlens.analysis.circuits import (
    Circuit,
    HeadSVD,
    StatePCA,
    head_svd,
    ov_circuit,
    qk_circuit,
    state_embedding_pca,
)
from dtlens.analysis.congruence import (
    CongruenceTable,
    congruence,
    embedding_congruence,
    embedding_neuron_congruence,
    head_congruence,
    per_layer_growth,
)
from dtlens.analysis.edits import (
    ObservationEdit,
    compose,
    flip_targets,
    patch_observation,
    set_cell,
    set_rtg,
    swap_instruction,
)
from dtlens.analysis.embeddings import EmbeddingRows, embedding_matrix
from dtlens.analysis.metrics import (
    Metric,
    action_entropy,
    action_probability,
    logit_diff,
    make_action_entropy_metric,
    make_action_probability_metric,
    make_logit_diff_metric,
    patching_effect,
    restored_logit_diff,
)
from dtlens.analysis.patching import activation_patching
from dtlens.analysis.path_nodes import MLP, Embed, Head, HeadInput, Logits, MLPInput
from dtlens.analysis.path_patching import path_patching, path_patching_sweep
from dtlens.analysis.results import PatchingResult
from dtlens.analysis.routine import GreedyRun, history_batch, play_greedy
from dtlens.analysis.scenarios import (
    PatchingPair,
    all_layouts,
    instruction_swap_pair,
    layout_batch,
    rtg_pair,
)

__all__ = [
    "MLP",
    "Circuit",
    "CongruenceTable",
    "Embed",
    "EmbeddingRows",
    "GreedyRun",
    "Head",
    "HeadInput",
    "HeadSVD",
    "LogitAttribution",
    "Logits",
    "MLPInput",
    "Metric",
    "ObservationEdit",
    "PatchingPair",
    "PatchingResult",
    "ResidualDecomposition",
    "StatePCA",
    "action_entropy",
    "action_probability",
    "activation_patching",
    "all_layouts",
    "compose",
    "congruence",
    "direct_logit_attribution",
    "embedding_congruence",
    "embedding_matrix",
    "embedding_neuron_congruence",
    "flip_targets",
    "head_congruence",
    "head_svd",
    "history_batch",
    "instruction_swap_pair",
    "layout_batch",
    "logit_diff",
    "logit_lens",
    "make_action_entropy_metric",
    "make_action_probability_metric",
    "make_logit_diff_metric",
    "ov_circuit",
    "patch_observation",
    "patching_effect",
    "path_patching",
    "path_patching_sweep",
    "per_layer_growth",
    "play_greedy",
    "qk_circuit",
    "residual_decomposition",
    "restored_logit_diff",
    "rtg_pair",
    "set_cell",
    "set_rtg",
    "state_embedding_pca",
    "swap_instruction",
]
