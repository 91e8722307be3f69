"""An AdamW state dict as safetensors tensors plus JSON, and back (no pickle).

:meth:`dtlens.training.trainer.Trainer.save_checkpoint` writes the tensors (moments, step
counts) to ``trainer_state.safetensors`` and the rest (hyper-parameters, scalars) to
``trainer_state.json``; :meth:`~dtlens.training.trainer.Trainer.resume` joins them again.

Example:
    >>> import torch
    >>> p = torch.nn.Parameter(torch.ones(2))
    >>> opt = torch.optim.AdamW([p], lr=0.1)
    >>> p.grad = torch.ones(2); opt.step()
    >>> tensors, meta = optimizer_to_flat(opt.state_dict())
    >>> sorted(tensors)
    ['optimizer.state.0.exp_avg', 'optimizer.state.0.exp_avg_sq', 'optimizer.state.0.step']
    >>> again = optimizer_from_flat(tensors, meta)
    >>> restored, original = again["state"].get(0), opt.state_dict()["state"].get(0)
    >>> torch.equal(restored.get("exp_avg"), original.get("exp_avg"))
    True
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

__all__ = ["optimizer_from_flat", "optimizer_to_flat"]


def optimizer_to_flat(state_dict: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split an optimizer state dict into named tensors and JSON (tuples become lists)."""
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, param_state in state_dict["state"].items():
        for key, value in param_state.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer.state.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    groups = [
        {k: list(v) if isinstance(v, tuple) else v for k, v in group.items()}
        for group in state_dict["param_groups"]
    ]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_flat(tensors: dict[str, Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer.state."):
            index, key = name.removeprefix("optimizer.state.").split(".", 1)
            state.setdefault(int(index), {})[key] = value
    for index, values in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    groups = [
        {k: tuple(v) if k == "betas" else v for k, v in group.items()}
        for group in meta["param_groups"]
    ]
    return {"state": state, "param_groups": groups}
