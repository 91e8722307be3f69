"""Progress measures of a Memory decision transformer: is it learning to remember?

Background:
    On the Memory task a decision transformer first learns the routine and sits on a
    plateau at 50 % success: the turn at the decision square is an XOR of the
    instruction (seen only in the first observation) and the target order, and no
    gradient reaches either alone. These measures, taken on one model (a training
    checkpoint), show whether and how it has left the plateau (the seed post asked for
    "storing model checkpoints and applying progress measures"):

    - ``decision_loss`` / ``decision_accuracy``: cross-entropy and accuracy of the turn
      at the decision square alone (the two-way choice left vs right, read from those
      two logits), on held-out windows that still hold the first observation and whose
      demonstrator turned there (exactly ln 2 = 0.693 for a model that ignores the
      instruction and turns both ways equally; the first measure to move);
    - ``success@0.9/<layout>``, ``success@0.9``, ``success@0``: greedy success per
      layout and overall at RTG 0.9, and at RTG 0 (greedy play in a layout is
      deterministic, so one episode per layout is exact);
    - ``attention/L0H<h>``: the decision state's attention to the first state (the one
      showing the instruction) in each layer-0 head, mean over the 4 layouts;
    - ``swap_logit_diff``: how much swapping the instruction moves the decision,
      ``ld(clean) - ld(swapped)`` with ``ld = logit(correct turn) - logit(other turn)``
      for the clean instruction, mean over the 4 layouts (0 for a model that ignores
      the instruction); ``swap_logit_diff_min``: the smallest over layouts;
    - ``probe/<hook>``: held-out accuracy of a logistic-regression probe for the
      instruction, read from the residual stream at the decision token after the
      embeddings (``probe/embed``) and after every layer (``probe/L<l>``).

Example:
    >>> data = DecisionData.from_demonstrations(demos, val_sampler)  # doctest: +SKIP
    >>> progress_measures(model, data)["decision_loss"]  # doctest: +SKIP
    0.693
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from dtlens.data.decision import decision_steps, episode_instructions
from dtlens.env import MEMORY_ENV_ID, SCENARIOS
from dtlens.errors import ConfigError
from dtlens.training.evaluate import rollout

if TYPE_CHECKING:
    from dtlens.data.demonstrations import Demonstrations
    from dtlens.data.windows import TrainingWindows, WindowSampler
    from dtlens.model.hooked_dt import HookedDecisionTransformer

__all__ = [
    "DecisionData",
    "decision_attention",
    "decision_loss",
    "instruction_probe",
    "make_progress_evaluator",
    "progress_measures",
    "residual_at_decision",
    "success_by_layout",
    "swap_logit_diff",
]

#: the turns at the decision square: MiniGrid's ``left`` (0) and ``right`` (1)
_TURNS = (0, 1)
#: fewest windows per instruction the probe accepts (a held-out split needs several)
_MIN_PER_CLASS = 5


@dataclass(frozen=True, eq=False)
class DecisionData:
    """Held-out windows ending at the decision square, with the episode's instruction.

    Attributes:
        windows: windows ending at the decision square facing the wall whose context
            still holds the episode's first observation, and whose last action is a
            turn (``left`` or ``right``: the memory decision).
        instruction: ``[N]`` 0 for a key instruction, 1 for a ball.
    """

    windows: TrainingWindows
    instruction: Int[np.ndarray, " window"]

    @classmethod
    def from_demonstrations(
        cls, demos: Demonstrations, sampler: WindowSampler, max_windows: int | None = 2000
    ) -> DecisionData:
        """Every such window of ``sampler``'s episodes (the first ``max_windows``).

        Raises:
            ConfigError: no decision-square step has the first observation in context.
        """
        steps = decision_steps(demos, sampler.episode_indices, max_timestep=sampler.n_steps - 1)
        steps = steps[np.isin(demos.actions[steps], _TURNS)]
        if steps.size == 0:
            raise ConfigError(
                "no decision-square step with the first observation in context in these "
                "episodes; the progress measures need Memory demonstrations that reach it"
            )
        steps = steps[:max_windows]
        instruction = episode_instructions(demos)[_episode_of(demos, steps)]
        return cls(sampler.windows_ending_at(steps), instruction)

    def __len__(self) -> int:
        return int(self.instruction.size)


def _episode_of(demos: Demonstrations, steps: np.ndarray) -> np.ndarray:
    return np.searchsorted(demos.episode_starts, steps, side="right") - 1


@torch.no_grad()
def decision_loss(model: HookedDecisionTransformer, data: DecisionData) -> tuple[float, float]:
    """Two-way cross-entropy and accuracy of the turn at the decision square.

    The logits of ``left`` and ``right`` at the window's last state are compared
    (a softmax over those two), against the demonstrator's turn: ln 2 when the model
    scores both turns alike.

    Example:
        >>> loss, accuracy = decision_loss(model, data)  # doctest: +SKIP
    """
    turns = _last_logits(model, data)[:, list(_TURNS)]
    targets = data.windows.targets[:, -1].to(turns.device)  # left = 0, right = 1
    loss = F.cross_entropy(turns, targets)
    accuracy = (turns.argmax(-1) == targets).float().mean()
    return float(loss), float(accuracy)


def _last_logits(model: HookedDecisionTransformer, data: DecisionData) -> Float[Tensor, "n act"]:
    batch = data.windows.batch.to(model.device)
    return model.action_logits(batch)[:, -1]


@torch.no_grad()
def success_by_layout(
    model: HookedDecisionTransformer,
    rtg: float,
    padding: str | None = None,
    max_steps: int = 50,
    env_id: str = MEMORY_ENV_ID,
) -> dict[str, float]:
    """Greedy success (0 or 1) in each of the 4 layouts at ``rtg``, by layout name.

    Args:
        model: the decision transformer.
        rtg: the initial RTG.
        padding: :func:`~dtlens.training.evaluate.rollout`'s ``padding``; default the
            one the model asks for (``model.context_padding``).
        max_steps: the episode limit.
        env_id: the Memory env.

    Example:
        >>> success_by_layout(model, 0.9)  # doctest: +SKIP
        {'key/top-key': 1.0, 'key/top-ball': 1.0, 'ball/top-key': 1.0, 'ball/top-ball': 1.0}
    """
    result = rollout(
        model,
        env_id,
        float(rtg),
        n_episodes=len(SCENARIOS),
        seeds=0,
        layouts="balanced",
        temperature=0.0,
        max_steps=max_steps,
        padding=padding,
    )
    return {s.name: float(result.success[i]) for i, s in enumerate(SCENARIOS)}


def _layout_batches(model: HookedDecisionTransformer, rtg: float):
    from dtlens.analysis.edits.scenarios import model_instruction_pairs
    from dtlens.model.batch import TrajectoryBatch

    pairs = model_instruction_pairs(model, rtg)
    clean = TrajectoryBatch.cat([p.clean for p in pairs]).to(model.device)
    corrupt = TrajectoryBatch.cat([p.corrupt for p in pairs]).to(model.device)
    answer = torch.tensor([p.answer_action for p in pairs])
    wrong = torch.tensor([p.wrong_action for p in pairs])
    return clean, corrupt, answer, wrong


@torch.no_grad()
def decision_attention(model: HookedDecisionTransformer, rtg: float = 0.9) -> np.ndarray:
    """``[n_heads]`` layer-0 attention from the decision state to the first real state.

    On each layout's route to the decision square (the window the model expects), the
    attention probability of the last state token (the decision square) on the state
    token of the episode's first observation, mean over the 4 layouts.

    Example:
        >>> decision_attention(model).shape  # doctest: +SKIP
        (8,)
    """
    clean, _, _, _ = _layout_batches(model, rtg)
    _, cache = model.run_with_cache(clean, names_filter=lambda n: n == _PATTERN)
    pattern = cache[_PATTERN]  # [batch, head, query, key]
    positions = model.state_positions(clean.n_steps)
    first = _first_real_step(clean)
    keys = torch.tensor([positions[t] for t in first.tolist()], device=pattern.device)
    rows = pattern[:, :, positions[-1], :]  # [batch, head, key]
    chosen = rows.gather(2, keys[:, None, None].expand(-1, rows.shape[1], 1))[..., 0]
    return chosen.mean(0).cpu().numpy()


_PATTERN = "blocks.0.attn.hook_pattern"


def _first_real_step(batch) -> Tensor:
    """Index of each row's first real step (its timestep-0 observation)."""
    # padded steps have timestep 0 too, so use the last step with timestep 0
    zero = batch.timesteps == 0
    steps = torch.arange(batch.n_steps, device=zero.device).expand_as(zero)
    return torch.where(zero, steps, torch.full_like(steps, -1)).max(1).values


@torch.no_grad()
def swap_logit_diff(model: HookedDecisionTransformer, rtg: float = 0.9) -> np.ndarray:
    """``[4]`` per layout: ``ld(clean) - ld(instruction swapped)`` at the decision square.

    ``ld`` = logit of the turn towards the target matching the clean instruction
    minus logit of the other turn. A model that ignores the instruction gives 0; one
    that follows it gives twice its clean margin.

    Example:
        >>> swap_logit_diff(model).round(1)  # doctest: +SKIP
        array([12.3, 11.8, 12.9, 12.0], dtype=float32)
    """
    clean, corrupt, answer, wrong = _layout_batches(model, rtg)
    rows = torch.arange(len(answer))

    def ld(batch) -> Tensor:
        logits = model(batch)[:, -1].cpu()
        return logits[rows, answer] - logits[rows, wrong]

    return (ld(clean) - ld(corrupt)).numpy()


@torch.no_grad()
def residual_at_decision(model: HookedDecisionTransformer, data: DecisionData) -> dict[str, Tensor]:
    """The residual stream at the decision token: after the embeddings and each layer."""
    names = {"embed": "blocks.0.hook_resid_pre"}
    names |= {f"L{layer}": f"blocks.{layer}.hook_resid_post" for layer in range(model.cfg.n_layers)}
    wanted = set(names.values())
    batch = data.windows.batch.to(model.device)
    _, cache = model.run_with_cache(batch, names_filter=lambda n: n in wanted)
    last = model.state_positions(batch.n_steps)[-1]
    return {label: cache[name][:, last].cpu() for label, name in names.items()}


def instruction_probe(
    model: HookedDecisionTransformer, data: DecisionData, seed: int = 0, test_fraction: float = 0.3
) -> dict[str, float]:
    """Held-out accuracy of a logistic-regression probe for the instruction, per layer.

    Features: the residual stream at the decision token (:func:`residual_at_decision`);
    the probe is :func:`dtlens.analysis.probes.fit_probe` (standardised on the training
    split, a seeded stratified split holding out ``test_fraction`` of the windows).
    Chance is the majority class's share. :mod:`dtlens.analysis.probes` probes any
    hook, token and fact, with baselines.

    Example:
        >>> instruction_probe(model, data)  # doctest: +SKIP
        {'embed': 0.55, 'L0': 0.56, 'L1': 1.0}
    """
    from dtlens.analysis.probes.fit import fit_probe

    labels = np.asarray(data.instruction)
    counts = np.bincount(labels, minlength=2)
    if counts.min() < _MIN_PER_CLASS:
        raise ConfigError(
            f"the instruction probe needs at least {_MIN_PER_CLASS} held-out decision windows "
            f"of each instruction; got {counts[0]} key and {counts[1]} ball. Hold out more "
            "episodes (val_fraction) or pass probe=False."
        )
    return {
        label: fit_probe(features, labels, seed=seed, test_fraction=test_fraction).accuracy
        for label, features in residual_at_decision(model, data).items()
    }


def progress_measures(
    model: HookedDecisionTransformer,
    data: DecisionData | None = None,
    rtgs: tuple[float, float] = (0.9, 0.0),
    probe: bool = True,
) -> dict[str, float]:
    """Every progress measure of one model, as a flat ``{name: value}`` dict.

    Args:
        model: the decision transformer (put in eval mode here, then restored).
        data: held-out decision windows; None skips the decision loss and the probe.
        rtgs: the high and the low RTG of the success measures.
        probe: fit the instruction probes (the slowest measure).

    Example:
        >>> sorted(progress_measures(model, data))[:3]  # doctest: +SKIP
        ['attention/L0H0', 'attention/L0H1', 'decision_accuracy']
    """
    was_training = model.training
    model.eval()
    try:
        high, low = rtgs
        out: dict[str, float] = {}
        if data is not None:
            out["decision_loss"], out["decision_accuracy"] = decision_loss(model, data)
        per_layout = success_by_layout(model, high)
        out |= {f"success@{high:g}/{name}": v for name, v in per_layout.items()}
        out[f"success@{high:g}"] = float(np.mean(list(per_layout.values())))
        out[f"success@{low:g}"] = float(np.mean(list(success_by_layout(model, low).values())))
        attention = decision_attention(model, high)
        out |= {f"attention/L0H{h}": float(a) for h, a in enumerate(attention)}
        swap = swap_logit_diff(model, high)
        out["swap_logit_diff"] = float(swap.mean())
        out["swap_logit_diff_min"] = float(swap.min())
        if data is not None and probe:
            out |= {f"probe/{k}": v for k, v in instruction_probe(model, data).items()}
        return out
    finally:
        model.train(was_training)


def make_progress_evaluator(
    data: DecisionData | None, rtgs: tuple[float, float] = (0.9, 0.0)
) -> Callable[[HookedDecisionTransformer], dict[str, float]]:
    """A :class:`~dtlens.training.trainer.Trainer` evaluator logging the progress measures
    (without the probes, which :func:`~dtlens.training.dynamics.training_dynamics` adds
    from the checkpoints).

    Example:
        >>> evaluator = make_progress_evaluator(data)  # doctest: +SKIP
        >>> trainer = Trainer(config, train, val, evaluator=evaluator)  # doctest: +SKIP
    """

    def evaluate(model: HookedDecisionTransformer) -> dict[str, float]:
        return progress_measures(model, data, rtgs=rtgs, probe=False)

    return evaluate
