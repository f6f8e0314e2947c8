"""The reference's four parameter groups and polynomial decay, for SGD (the paper's) or
AdamW (timm's optimiser factory)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch
from timm.optim import create_optimizer_v2
from torch import nn

from puzzlecam.dataclass_yaml import require

__all__ = ["OptimConfig", "parameter_groups", "build_optimizer", "poly_factor", "set_poly_lr"]


@dataclass(frozen=True)
class OptimConfig:
    """SGD settings. The reference's optimiser passed weight decay into SGD's momentum
    slot, so its published numbers were made with momentum = weight decay (1e-4); the
    paper presets set ``momentum: 0.0001`` to reproduce that, the default is 0.9.

    Groups as the reference: pretrained weights x1 (with wd), pretrained biases x2 (no
    wd), new weights x``new_lr_mult`` (with wd), new biases x2·``new_lr_mult`` (no wd).

    ``warmup`` (0 in the reference): the fraction of training over which the learning
    rate rises linearly from 0 before the poly decay takes over; it keeps the large
    first gradients of a freshly initialised head from wrecking pretrained features.

    ``name``: ``sgd`` (the paper's; ``momentum`` and ``nesterov`` apply) or ``adamw``
    (not in the paper: timm's AdamW with decoupled weight decay, same groups and poly
    schedule; ``momentum``/``nesterov`` are ignored). On short CPU schedules AdamW keeps the
    classifier learning under the puzzle terms where SGD stalls (docs/experiments.md).
    """

    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = True
    poly_power: float = 0.9
    new_lr_mult: float = 10.0
    warmup: float = 0.0

    def __post_init__(self) -> None:
        require(
            self.name in ("sgd", "adamw"), "name", f"must be 'sgd' or 'adamw', got {self.name!r}"
        )
        require(0 < self.lr < math.inf, "lr", f"must be a positive number, got {self.lr}")
        for name in ("momentum", "weight_decay", "poly_power"):
            value = getattr(self, name)
            require(0 <= value < math.inf, name, f"must be 0 or more, got {value}")
        require(
            0 < self.new_lr_mult < math.inf,
            "new_lr_mult",
            f"must be a positive number, got {self.new_lr_mult}",
        )
        require(
            not (self.name == "sgd" and self.nesterov and self.momentum <= 0),
            "nesterov",
            "needs momentum > 0 (set nesterov: false for momentum 0)",
        )
        require(
            0.0 <= self.warmup < 1.0,
            "warmup",
            f"is a fraction of training, in [0, 1), got {self.warmup}",
        )


def _is_weight(name: str) -> bool:
    return name.rsplit(".", 1)[-1] == "weight"


def parameter_groups(
    model: nn.Module, new_modules: Iterable[nn.Module], config: OptimConfig
) -> list[dict]:
    """The four groups, as dicts for torch.optim (frozen parameters left out).

    Every group records its ``initial_lr`` so the poly schedule can be set from the step.
    """
    new_ids = {id(p) for module in new_modules for p in module.parameters()}
    groups: dict[str, list[torch.nn.Parameter]] = {
        "pretrained_weights": [], "pretrained_biases": [], "new_weights": [], "new_biases": []
    }  # fmt: skip
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        origin = "new" if id(parameter) in new_ids else "pretrained"
        kind = "weights" if _is_weight(name) else "biases"
        groups[f"{origin}_{kind}"].append(parameter)
    settings = {
        "pretrained_weights": (1.0, config.weight_decay),
        "pretrained_biases": (2.0, 0.0),
        "new_weights": (config.new_lr_mult, config.weight_decay),
        "new_biases": (2.0 * config.new_lr_mult, 0.0),
    }
    result = []
    for name, params in groups.items():
        if params:
            mult, decay = settings[name]
            lr = config.lr * mult
            result.append(
                {"name": name, "params": params, "lr": lr, "initial_lr": lr, "weight_decay": decay}
            )
    return result


def build_optimizer(groups: list[dict], config: OptimConfig) -> torch.optim.Optimizer:
    """SGD or AdamW over ``groups`` (their own lr and weight decay take precedence)."""
    if config.name == "adamw":
        return create_optimizer_v2(
            groups, opt="adamw", lr=config.lr, weight_decay=config.weight_decay
        )
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)


def poly_factor(step: int, total_steps: int, power: float, warmup: float = 0.0) -> float:
    """(1 - step / total)^power, the reference's schedule (factor 1 at step 0), times a
    linear warm-up over the first ``warmup`` fraction of the steps when asked for."""
    factor = max(0.0, 1.0 - step / max(total_steps, 1)) ** power
    warmup_steps = warmup * total_steps
    if step < warmup_steps:
        factor *= (step + 1) / (warmup_steps + 1)
    return factor


def set_poly_lr(
    optimizer: torch.optim.Optimizer, step: int, total_steps: int, power: float, warmup: float = 0.0
) -> float:
    """Set every group's lr for ``step``; returns the factor applied."""
    factor = poly_factor(step, total_steps, power, warmup)
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor
    return factor
