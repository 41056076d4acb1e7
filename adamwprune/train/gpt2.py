"""The GPT-2 part of a run: model from a preset, token batches, next-token loss."""

from __future__ import annotations

import math
from typing import Any

from adamwprune.train.family import ModelFamily

PERPLEXITY_CAP = 20.0


def perplexity(val_loss: float) -> float:
    """exp(min(val_loss, 20)): the spec's perplexity, capped so huge losses don't overflow."""
    return math.exp(min(val_loss, PERPLEXITY_CAP))


class GPT2Adapter:
    """Adapts ``adamwprune.models.gpt2.GPT`` and a TokenDataset to the shared loop."""

    throughput_metric = "tokens_per_sec"
    throughput_unit = "tok"
    selection = ("val_loss", "min")

    def __init__(self, dataset: Any, model_name: str = "gpt2", block_size: int = 1024,
                 dropout: float = 0.0):
        self.dataset = dataset
        self.model_name = model_name
        self.block_size = block_size
        self.dropout = dropout

    def check(self) -> None:
        """Refuse, before anything is opened, a block size that the data cannot fill."""
        self.dataset.check_block_size(self.block_size)

    def build_model(self):
        from adamwprune.models.gpt2 import GPT

        return GPT.from_preset(self.model_name, vocab_size=self.dataset.vocab_size,
                               block_size=self.block_size, dropout=self.dropout)

    def items_per_batch(self, batch_size: int) -> int:
        return batch_size * self.block_size

    def get_batch(self, split: str, batch_size: int, generator: Any, device: str):
        return self.dataset.get_batch(split, batch_size, self.block_size, generator, device)

    def loss(self, model: Any, batch: Any):
        x, y = batch
        _, loss = model(x, y)
        return loss

    def eval_batch(self, model: Any, batch: Any) -> dict[str, Any]:
        _, targets = batch
        return {"loss_sum": self.loss(model, batch) * targets.numel(), "tokens": targets.numel()}

    def summarize(self, totals: dict[str, float]) -> dict[str, float]:
        val_loss = totals["loss_sum"] / totals["tokens"]
        return {"val_loss": val_loss, "val_perplexity": perplexity(val_loss)}

    def flops_per_item(self, model: Any) -> float:
        return float(model.flops_per_token())

    def optimizer_groups(self, model: Any, weight_decay: float) -> list[dict[str, Any]]:
        return model.configure_optimizer_groups(weight_decay)

    def prunable_parameters(self, model: Any):
        return model.prunable_parameters()

    def describe(self) -> dict[str, Any]:
        return {"model": "gpt2", "model_name": self.model_name, "block_size": self.block_size,
                "dataset": self.dataset.name, "vocab_size": self.dataset.vocab_size}


def make_adapter(settings) -> GPT2Adapter:
    from adamwprune.data import get_dataset

    adapter = GPT2Adapter(get_dataset(settings.dataset, data_dir=settings.data_dir),
                          model_name=settings.model_name, block_size=settings.block_size)
    adapter.check()
    return adapter


FAMILY = ModelFamily("gpt2", "Train GPT-2 with the shared AdamWPrune loop, tracked in Trackio and/or W&B.",
                     make_adapter)
