"""What the loop measures between two log points, kept on the device until the one host sync."""

from __future__ import annotations

import time

import torch


class IntervalMeter:
    """Training loss, gradient norms and throughput over one log interval."""

    def __init__(self, device: str):
        self.loss = torch.zeros((), device=device)
        self.grad_norm_sum = torch.zeros((), device=device)
        self.grad_norm_max = torch.zeros((), device=device)
        self.iters = 0           # steps measured since the last log point
        self.timed_iters = 0     # steps since the clock started (an eval restarts it)
        self.started = time.perf_counter()

    def add_loss(self, loss: torch.Tensor) -> None:
        self.loss += loss.detach()

    def add_step(self, grad_norm: torch.Tensor) -> None:
        """One optimizer step, with its gradient norm before clipping."""
        norm = grad_norm.detach().float()
        self.grad_norm_sum += norm
        torch.maximum(self.grad_norm_max, norm, out=self.grad_norm_max)
        self.iters += 1
        self.timed_iters += 1

    def restart_clock(self) -> None:
        """Throughput is timed from here: eval time is excluded by restarting after each eval."""
        self.started = time.perf_counter()
        self.timed_iters = 0

    def seconds(self) -> float:
        return max(time.perf_counter() - self.started, 1e-9)

    def reset(self) -> None:
        for total in (self.loss, self.grad_norm_sum, self.grad_norm_max):
            total.zero_()
        self.iters = 0
        self.restart_clock()


def read_all(values: dict[str, torch.Tensor | float]) -> dict[str, float]:
    """``values`` as floats, with one host sync for all the tensors among them."""
    tensors = {name: value for name, value in values.items() if torch.is_tensor(value)}
    floats = {name: float(value) for name, value in values.items() if not torch.is_tensor(value)}
    if tensors:
        device = next(iter(tensors.values())).device
        stacked = torch.stack([t.detach().to(device=device, dtype=torch.float64) for t in tensors.values()])
        floats.update(zip(tensors, stacked.tolist()))
    return {name: floats[name] for name in values}
