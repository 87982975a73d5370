"""The learning-rate schedule of CycleGAN and pix2pix: constant, then linear decay to zero.

A pure function of the step count (no hidden state), so a resumed run continues on exactly the same curve.
"""
from __future__ import annotations

from typing import Any, Dict, List

import torch


def decay_factor(step: int, total_steps: int, decay_start: int) -> float:
    """1 for steps before `decay_start`, then falling linearly to 0 at `total_steps`."""
    if step < decay_start or total_steps <= decay_start:
        return 1.0
    return max(0.0, (total_steps - step) / float(total_steps - decay_start))


class LinearDecaySchedule:
    """Sets each param group's lr to base_lr * decay_factor(step); call `step()` after each optimizer step."""

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, decay_start: int) -> None:
        self.optimizer = optimizer
        self.total_steps = total_steps
        self.decay_start = decay_start
        self.base_lrs: List[float] = [float(group["lr"]) for group in optimizer.param_groups]
        self.step_count = 0
        self._apply()

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def get_last_lr(self) -> List[float]:
        return [float(group["lr"]) for group in self.optimizer.param_groups]

    def _apply(self) -> None:
        factor = decay_factor(self.step_count, self.total_steps, self.decay_start)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor

    def state_dict(self) -> Dict[str, Any]:
        return {"step": self.step_count, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore the position; the curve's shape (total, decay_start) stays the current config's."""
        self.step_count = int(state["step"])
        self.base_lrs = [float(lr) for lr in state["base_lrs"]]
        self._apply()
