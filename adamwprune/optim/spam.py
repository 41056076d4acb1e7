"""AdamWSPAM: AdamW with SPAM (Huang et al., "SPAM: Spike-Aware Adam with Momentum Reset for
Stable LLM Training", ICLR 2025).

Per optimizer step, in this order:

1. Momentum reset: every ``reset_interval`` steps both moments are set to zero. The step
   counter is not reset, so bias correction goes on with the global step.
2. Spike-aware clipping: where g² > θ·v (v: the second moment before this step's
   update), g becomes sign(g)·sqrt(θ·v). At the start and right after a reset v = 0,
   where this rule would zero every gradient and freeze training for good; so it is
   skipped for the first ``clip_delay`` steps after the start and after each reset
   (as the authors' code does).
3. Warm-up after reset: the learning rate is multiplied by max(0.5·(1 − cos(π·t/N)), 1e-3)
   for t = 1..N steps after the start or the last reset.
4. The AdamW update itself is torch's (fused or foreach kernels, decoupled weight
   decay at the applied rate), optionally with AMSGrad.

Optional (off by default; the paper has neither): a spike detector on the global
gradient norm (z-score over the last 100 norms above ``spike_threshold``: soft reset
m×0.5, v×0.9). Nothing here syncs with the host: counts stay on the device until the
loop's one sync per log interval reads :meth:`interval_metrics`.

Every counter lives in the param groups or the per-parameter state, so it is in
``state_dict()``: a resumed run continues the reset and warm-up schedule exactly.
"""

from __future__ import annotations

import math

import torch

WARMUP_FLOOR = 1e-3
SPIKE_WINDOW = 100


class AdamWSPAM(torch.optim.AdamW):
    def __init__(self, params, *, lr: float, betas: tuple[float, float], weight_decay: float,
                 theta: float = 50.0, reset_interval: int | None = 1000, clip_delay: int = 20,
                 warmup_steps: int | None = 100, clip: bool = True, spike_threshold: float | None = None,
                 amsgrad: bool = False, fused: bool | None = None):
        super().__init__(params, lr=lr, betas=betas, weight_decay=weight_decay, amsgrad=amsgrad, fused=fused)
        self.spam = {"theta": theta, "reset_interval": reset_interval, "clip_delay": clip_delay,
                     "warmup_steps": warmup_steps, "clip": clip, "spike_threshold": spike_threshold}
        device = self.param_groups[0]["params"][0].device
        for group in self.param_groups:
            group.setdefault("spam_step", 0)          # optimizer steps taken (global)
            group.setdefault("spam_since_reset", 0)   # steps since the start or the last reset
        if spike_threshold is not None:  # the last global gradient norms, a ring (saved with the groups)
            self.param_groups[0].setdefault("spam_norms", torch.zeros(SPIKE_WINDOW, device=device))
        self._clipped = torch.zeros((), dtype=torch.int64, device=device)
        self._elements = 0
        self._resets = 0
        self._applied_lr = lr

    def warmup_factor(self, since_reset: int) -> float:
        """The learning-rate multiplier for the ``since_reset``-th step (1-based) after a reset."""
        n = self.spam["warmup_steps"]
        if not n or since_reset >= n:
            return 1.0
        return max(0.5 * (1.0 - math.cos(math.pi * since_reset / n)), WARMUP_FLOOR)

    @torch.no_grad()
    def step(self, closure=None):
        interval = self.spam["reset_interval"]
        scheduled = {}
        for group in self.param_groups:
            if interval and group["spam_step"] > 0 and group["spam_step"] % interval == 0:
                self._reset_moments(group)
            group["spam_step"] += 1
            group["spam_since_reset"] += 1
            if self.spam["clip"] and group["spam_since_reset"] > self.spam["clip_delay"]:
                self._clip_spikes(group)
            scheduled[id(group)] = group["lr"]
            group["lr"] = group["lr"] * self.warmup_factor(group["spam_since_reset"])
        if self.spam["spike_threshold"] is not None:
            self._soft_reset_on_spike()
        self._applied_lr = self.param_groups[0]["lr"]
        try:
            return super().step(closure)
        finally:
            for group in self.param_groups:  # the loop's schedule sets lr again next step
                group["lr"] = scheduled[id(group)]

    def _reset_moments(self, group: dict) -> None:
        for p in group["params"]:
            state = self.state.get(p, {})
            for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                if key in state:
                    state[key].zero_()
        group["spam_since_reset"] = 0
        if group is self.param_groups[0]:
            self._resets += 1

    def _clip_spikes(self, group: dict) -> None:
        theta = self.spam["theta"]
        for p in group["params"]:
            state = self.state.get(p, {})
            if p.grad is None or "exp_avg_sq" not in state:
                continue
            limit = state["exp_avg_sq"].mul(theta)
            spikes = p.grad.square() > limit
            p.grad.copy_(torch.where(spikes, p.grad.sign() * limit.sqrt(), p.grad))
            self._clipped += torch.count_nonzero(spikes)
            self._elements += p.grad.numel()

    def _soft_reset_on_spike(self) -> None:
        """m×0.5 and v×0.9 where the global gradient norm is a spike (z-score above the threshold)."""
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        ring, step = self.param_groups[0]["spam_norms"], self.param_groups[0]["spam_step"]
        seen = min(step - 1, SPIKE_WINDOW)  # norms already in the ring
        history = ring[:seen]
        if seen >= 2:
            z = (norm - history.mean()) / (history.std() + 1e-12)
            spike = z > self.spam["spike_threshold"]
            m_scale, v_scale = torch.where(spike, 0.5, 1.0), torch.where(spike, 0.9, 1.0)
            for group in self.param_groups:
                for p in group["params"]:
                    state = self.state.get(p, {})
                    if "exp_avg" in state:
                        state["exp_avg"].mul_(m_scale)
                        state["exp_avg_sq"].mul_(v_scale)
        ring[(step - 1) % SPIKE_WINDOW] = norm

    def interval_metrics(self) -> dict[str, torch.Tensor | float]:
        """What happened since the last call: spam_clipped_fraction, spam_resets, the applied lr."""
        fraction = self._clipped.float() / max(self._elements, 1)
        metrics = {"spam_clipped_fraction": fraction, "spam_resets": float(self._resets),
                   "learning_rate": self._applied_lr}
        self._clipped.zero_()
        self._elements = 0
        self._resets = 0
        return metrics
