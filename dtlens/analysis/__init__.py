"""Analyses of decision transformers, one concept per subpackage.

- :mod:`~dtlens.analysis.metrics`: the metrics every analysis takes (``MetricFn``:
  logits -> one value per pair, or a scalar) and the restored fraction;
- :mod:`~dtlens.analysis.edits`: inputs to compare (observation and RTG edits, the
  Memory task's clean/corrupt pairs, greedy play);
- :mod:`~dtlens.analysis.patching`: activation patching sweeps (exact, and estimated by
  attribution patching) and their results;
- :mod:`~dtlens.analysis.circuits`: the model as a graph of senders and receivers:
  path patching, exact edge patching, EAP/EAP-IG edge scores, ACDC, faithfulness;
- :mod:`~dtlens.analysis.probes`: linear probes for facts of the environment, layer by
  layer, against a random model and shuffled labels;
- :mod:`~dtlens.analysis.steering`: activation addition as a hook context (also in
  rollouts), and sweeps measuring retargeting in play;
- :mod:`~dtlens.analysis.scrubbing`: causal scrubbing (hypotheses as trees of claims,
  resampling, the share of the metric a hypothesis recovers);
- :mod:`~dtlens.analysis.decomposition`: direct logit attribution, logit lens, the
  residual stream by component;
- :mod:`~dtlens.analysis.weights`: QK/OV circuits, congruence, embeddings (weights only);
- :mod:`~dtlens.analysis.maps` and :mod:`~dtlens.analysis.rollout_gif`: the model's
  actions with the agent placed on every square, and GIFs of its greedy play.
- :mod:`~dtlens.analysis.agent_comparison`: the DT against the agents it simulates (KL
  and argmax agreement on the same episodes, per state kind).

This package re-exports their public names.

Example:
    >>> from dtlens.analysis import activation_patching, instruction_swap_pair, path_patching
"""

from dtlens.analysis.agent_comparison import (
    AgentComparison,
    ComparedAgent,
    ComparisonEpisodes,
    agent_probabilities,
    argmax_agreement,
    compare_agents,
    demonstrator_agents,
    dt_probabilities,
    kl_divergence,
    play_episodes,
    state_kinds,
)
from dtlens.analysis.circuits import (
    ACDCResult,
    DTGraph,
    Edge,
    EdgeScores,
    FaithfulnessCurve,
    acdc,
    circuit_faithfulness,
    edge_attribution_patching,
    edge_patching,
    faithfulness_curve,
)
from dtlens.analysis.circuits.nodes import MLP, Embed, Head, HeadInput, Logits, MLPInput, ResidPre
from dtlens.analysis.circuits.path_patching import path_patching, path_patching_sweep
from dtlens.analysis.decomposition import (
    LogitAttribution,
    ResidualDecomposition,
    direct_logit_attribution,
    logit_lens,
    residual_decomposition,
)
from dtlens.analysis.edits.observations import (
    ObservationEdit,
    compose,
    flip_targets,
    patch_observation,
    set_cell,
    set_rtg,
    swap_instruction,
)
from dtlens.analysis.edits.routine import GreedyRun, history_batch, play_greedy
from dtlens.analysis.edits.scenarios import (
    PatchingPair,
    all_layouts,
    instruction_swap_pair,
    layout_batch,
    rtg_pair,
)
from dtlens.analysis.maps import ActionMaps, action_maps
from dtlens.analysis.metrics import (
    Metric,
    MetricFn,
    action_entropy,
    action_probability,
    logit_diff,
    make_action_entropy_metric,
    make_action_probability_metric,
    make_logit_diff_metric,
    patching_effect,
    restored_logit_diff,
)
from dtlens.analysis.patching.activation import activation_patching
from dtlens.analysis.patching.attribution import attribution_patching
from dtlens.analysis.patching.results import PatchingResult
from dtlens.analysis.probes import (
    ProbeData,
    ProbeFit,
    ProbeResult,
    fit_probe,
    linear_probes,
    memory_windows,
    probe_activations,
    random_model,
    residual_hooks,
    rollout_windows,
    steps_to_decision,
    wilson_interval,
)
from dtlens.analysis.rollout_gif import RolloutGif, greedy_gif, greedy_gifs
from dtlens.analysis.scrubbing import (
    Claim,
    Hypothesis,
    Scrubber,
    ScrubbingDataset,
    ScrubbingResult,
    causal_scrubbing,
    decision_metric,
    memory_dataset,
    through_heads,
)
from dtlens.analysis.steering import (
    Steering,
    SteeringResult,
    fact_directions,
    mean_difference,
    probe_direction,
    steer,
    steering_sweep,
)
from dtlens.analysis.weights.congruence import (
    CongruenceTable,
    congruence,
    embedding_congruence,
    embedding_neuron_congruence,
    head_congruence,
    per_layer_growth,
)
from dtlens.analysis.weights.embeddings import EmbeddingRows, embedding_matrix
from dtlens.analysis.weights.qk_ov import (
    Circuit,
    HeadSVD,
    StatePCA,
    head_svd,
    ov_circuit,
    qk_circuit,
    state_embedding_pca,
)

__all__ = [
    "MLP",
    "ACDCResult",
    "ActionMaps",
    "AgentComparison",
    "Circuit",
    "Claim",
    "ComparedAgent",
    "ComparisonEpisodes",
    "CongruenceTable",
    "DTGraph",
    "Edge",
    "EdgeScores",
    "Embed",
    "EmbeddingRows",
    "FaithfulnessCurve",
    "GreedyRun",
    "Head",
    "HeadInput",
    "HeadSVD",
    "Hypothesis",
    "LogitAttribution",
    "Logits",
    "MLPInput",
    "Metric",
    "MetricFn",
    "ObservationEdit",
    "PatchingPair",
    "PatchingResult",
    "ProbeData",
    "ProbeFit",
    "ProbeResult",
    "ResidPre",
    "ResidualDecomposition",
    "RolloutGif",
    "Scrubber",
    "ScrubbingDataset",
    "ScrubbingResult",
    "StatePCA",
    "Steering",
    "SteeringResult",
    "acdc",
    "action_entropy",
    "action_maps",
    "action_probability",
    "activation_patching",
    "agent_probabilities",
    "all_layouts",
    "argmax_agreement",
    "attribution_patching",
    "causal_scrubbing",
    "circuit_faithfulness",
    "compare_agents",
    "compose",
    "congruence",
    "decision_metric",
    "demonstrator_agents",
    "direct_logit_attribution",
    "dt_probabilities",
    "edge_attribution_patching",
    "edge_patching",
    "embedding_congruence",
    "embedding_matrix",
    "embedding_neuron_congruence",
    "fact_directions",
    "faithfulness_curve",
    "fit_probe",
    "flip_targets",
    "greedy_gif",
    "greedy_gifs",
    "head_congruence",
    "head_svd",
    "history_batch",
    "instruction_swap_pair",
    "kl_divergence",
    "layout_batch",
    "linear_probes",
    "logit_diff",
    "logit_lens",
    "make_action_entropy_metric",
    "make_action_probability_metric",
    "make_logit_diff_metric",
    "mean_difference",
    "memory_dataset",
    "memory_windows",
    "ov_circuit",
    "patch_observation",
    "patching_effect",
    "path_patching",
    "path_patching_sweep",
    "per_layer_growth",
    "play_episodes",
    "play_greedy",
    "probe_activations",
    "probe_direction",
    "qk_circuit",
    "random_model",
    "residual_decomposition",
    "residual_hooks",
    "restored_logit_diff",
    "rollout_windows",
    "rtg_pair",
    "set_cell",
    "set_rtg",
    "state_embedding_pca",
    "state_kinds",
    "steer",
    "steering_sweep",
    "steps_to_decision",
    "swap_instruction",
    "through_heads",
    "wilson_interval",
]
