"""The image classifiers' adapter to the shared loop: LeNet-5 and ResNet-18/50 on MNIST,
CIFAR-10/100 or the offline digits (the families are in ``train/vision.py``).

Batches: training images are drawn uniformly with the loop's generator (so a resumed run
continues the same stream), with CIFAR's random crop (4 zero pixels of padding) and horizontal
flip, as tensor operations on the training device; every image is normalized per channel with
the training split's mean and standard deviation, and smaller images (MNIST's 28x28) are
zero-padded to the models' 32x32. On a GPU the whole dataset is moved there once, and the model
and its batches are channels-last (the loop adds bf16 autocast).

Evaluation is the whole test split at every validation point
(:meth:`ClassifierAdapter.eval_batch_at`), split over the ranks under DDP; the adapter selects the best checkpoint by ``val_accuracy`` (top-1, percent;
``val_top5_accuracy`` too from 100 classes). ``train_accuracy`` is the top-1 accuracy of the
augmented training batches since the previous validation point, logged with it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from adamwprune.errors import UserError

INPUT_SIZE = 32        # both models' input (LeNet-5's original size; ResNet's CIFAR stem)
CROP_PADDING = 4
TOP5_FROM_CLASSES = 100


def padded(images: np.ndarray, size: int = INPUT_SIZE) -> torch.Tensor:
    """uint8 images (N, C, H, W) as a tensor, zero-padded equally on each side to ``size`` x ``size``."""
    tensor = torch.from_numpy(images)
    top, left = (size - images.shape[2]) // 2, (size - images.shape[3]) // 2
    bottom, right = size - images.shape[2] - top, size - images.shape[3] - left
    return F.pad(tensor, (left, right, top, bottom)) if top or left or bottom or right else tensor


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of uint8 images (N, C, H, W), on the 0..1 scale."""
    sums = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(sums)
    for part in images.split(4096):  # float64 copies of a few thousand images at a time
        values = part.double()
        sums += values.sum((0, 2, 3))
        squares += values.square().sum((0, 2, 3))
    count = images.numel() / images.shape[1]
    mean = sums / count
    std = (squares / count - mean.square()).clamp_min(1e-12).sqrt()
    return (mean / 255).float(), (std / 255).float()


def crop_and_flip(images: torch.Tensor, generator: torch.Generator, padding: int = CROP_PADDING) -> torch.Tensor:
    """Each image cut at a random offset out of its copy zero-padded by ``padding`` pixels on every
    side, and mirrored left-right with probability 1/2 (CIFAR's standard augmentation), in one gather.
    The random numbers come from ``generator`` (on the CPU), whatever the images' device."""
    n, c, h, w = images.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator)
    flip = torch.randint(0, 2, (n,), generator=generator).bool()
    rows = offsets[0, :, None] + torch.arange(h)
    cols = offsets[1, :, None] + torch.arange(w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    device = images.device
    batch = torch.arange(n, device=device)[:, None, None, None]
    channel = torch.arange(c, device=device)[None, :, None, None]
    source = F.pad(images, (padding,) * 4)
    return source[batch, channel, rows.to(device)[:, None, :, None], cols.to(device)[:, None, None, :]]


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The convolutions and fully connected layers, in the order the model defines them."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear))]


def split_chunk(index: int, items: int, batches: int) -> tuple[int, int]:
    """Images [start, stop) of batch ``index`` when a validation point's ``batches`` cut the
    ``items`` test images into consecutive chunks: each image exactly once, in order."""
    return index * items // batches, (index + 1) * items // batches


class ClassifierAdapter:
    """Adapts LeNet-5 or a ResNet and an :class:`~adamwprune.data.images.ImageDataset` to the shared loop."""

    throughput_metric = "images_per_sec"
    throughput_unit = "img"
    selection = ("val_accuracy", "max")

    def __init__(self, dataset, model_name: str, settings, channels_last: bool = False):
        self.dataset, self.model_name, self.channels_last = dataset, model_name, channels_last
        self.splits = {"train": (padded(dataset.train_images), torch.from_numpy(dataset.train_labels)),
                       "val": (padded(dataset.test_images), torch.from_numpy(dataset.test_labels))}
        mean, std = channel_stats(torch.from_numpy(dataset.train_images))
        self.scale, self.shift = (1 / (255 * std)).view(1, -1, 1, 1), (-mean / std).view(1, -1, 1, 1)
        self.placed: dict[str, tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], torch.Tensor, torch.Tensor]] = {}
        self.test_items = len(dataset.test_labels)
        self.eval_samples, self.eval_batch_size = settings.eval_samples, settings.eval_batch_size
        self.top5 = dataset.num_classes >= TOP5_FROM_CLASSES
        self.train_correct: torch.Tensor | None = None  # since the last validation point, on the device
        self.train_count = 0

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.dataset.shape[0], INPUT_SIZE, INPUT_SIZE

    def check(self) -> None:
        """A validation point must be able to hold the whole test split."""
        if self.eval_samples * self.eval_batch_size < self.test_items:
            raise UserError(
                f"{self.model_name} evaluates the whole {self.dataset.name} test split ({self.test_items:,} images) "
                f"at each validation point, and --eval-samples {self.eval_samples} x --eval-batch-size "
                f"{self.eval_batch_size} = {self.eval_samples * self.eval_batch_size:,} images cannot hold it: use "
                f"--eval-samples {-(-self.test_items // self.eval_batch_size)} (or a larger --eval-batch-size)")

    def build_model(self) -> nn.Module:
        from adamwprune.models.lenet import LeNet5
        from adamwprune.models.resnet import ResNet

        channels, classes = self.dataset.shape[0], self.dataset.num_classes
        model = (LeNet5(channels, classes) if self.model_name == "lenet5"
                 else ResNet(self.model_name, channels, classes))
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def train_items(self) -> int:
        """Training images: what --epochs counts."""
        return len(self.dataset.train_labels)

    def items_per_batch(self, batch_size: int) -> int:
        return batch_size

    def _on(self, device: str):
        """The splits, scale and shift on ``device`` (moved there once)."""
        if device not in self.placed:
            self.placed[device] = ({split: (x.to(device), y.to(device)) for split, (x, y) in self.splits.items()},
                                   self.scale.to(device), self.shift.to(device))
        return self.placed[device]

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator, device: str):
        """Training images drawn uniformly with ``generator`` (augmented); validation goes through
        :meth:`eval_batch_at`, the whole test split."""
        splits, _, _ = self._on(device)
        images, labels = splits[split]
        index = torch.randint(len(labels), (batch_size,), generator=generator).to(device)
        images, labels = images[index], labels[index]
        if split == "train" and self.dataset.augment:
            images = crop_and_flip(images, generator)
        return self._normalized(images, device), labels

    def eval_batch_at(self, index: int, batches: int, batch_size: int, device: str):
        """Batch ``index`` of a validation point's ``batches``: the test split's chunk ``index``."""
        splits, _, _ = self._on(device)
        images, labels = splits["val"]
        start, stop = split_chunk(index, self.test_items, batches)
        return self._normalized(images[start:stop], device), labels[start:stop]

    def _normalized(self, images: torch.Tensor, device: str) -> torch.Tensor:
        _, scale, shift = self._on(device)
        images = images.float() * scale + shift
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        images, labels = batch
        logits = model(images)
        with torch.no_grad():  # train_accuracy, summed on the device until the next validation point
            correct = (logits.argmax(1) == labels).sum()
            self.train_correct = correct if self.train_correct is None else self.train_correct + correct
            self.train_count += labels.numel()
        return F.cross_entropy(logits, labels)

    def eval_batch(self, model: nn.Module, batch: Any) -> dict[str, Any]:
        """Sums over one micro-batch (possibly empty), plus the training counts since the last point
        (on the first call of a point; zero after), which the loop sums over the ranks like the rest."""
        images, labels = batch
        stats: dict[str, Any] = {"loss_sum": 0.0, "correct": 0, "count": labels.numel()}
        if self.top5:
            stats["correct_top5"] = 0
        if labels.numel():
            logits = model(images).float()
            stats["loss_sum"] = F.cross_entropy(logits, labels, reduction="sum")
            stats["correct"] = (logits.argmax(1) == labels).sum()
            if self.top5:
                stats["correct_top5"] = (logits.topk(5, 1).indices == labels[:, None]).any(1).sum()
        stats["train_correct"] = 0 if self.train_correct is None else self.train_correct
        stats["train_count"] = self.train_count
        self.train_correct, self.train_count = None, 0
        return stats

    def summarize(self, totals: dict[str, float]) -> dict[str, float]:
        count = totals["count"]
        if count != self.test_items:  # check() makes the chunks hold the split: a guard, not a case
            raise RuntimeError(f"a validation point evaluated {count:.0f} test images, not the split's "
                               f"{self.test_items}")
        metrics = {"val_loss": totals["loss_sum"] / count, "val_accuracy": 100 * totals["correct"] / count}
        if self.top5:
            metrics["val_top5_accuracy"] = 100 * totals["correct_top5"] / count
        if totals["train_count"]:
            metrics["train_accuracy"] = 100 * totals["train_correct"] / totals["train_count"]
        return metrics

    def flops_per_item(self, model: nn.Module) -> float:
        """Training FLOPs per image: 3 x the forward pass's 2 x multiply-accumulates of the convolutions
        and fully connected layers, counted with hooks on one image."""
        macs: list[int] = []
        hooks = [module.register_forward_hook(
            lambda module, inputs, output: macs.append(output[0].numel() * module.weight[0].numel()))
            for _, module in weight_layers(model)]
        training = model.training
        try:
            model.eval()
            with torch.no_grad():
                model(torch.zeros(1, *self.input_shape, device=next(model.parameters()).device))
        finally:
            model.train(training)
            for hook in hooks:
                hook.remove()
        return 6.0 * sum(macs)

    def optimizer_groups(self, model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
        """Weight decay on the convolution kernels and fully connected weights, none on biases and batch norm."""
        params = list(model.parameters())
        return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]

    def prunable_parameters(self, model: nn.Module) -> Sequence[tuple[str, nn.Parameter]]:
        """Every convolution kernel (shortcuts included) and fully connected weight but the first
        convolution's and the classifier's last layer: the usual practice, as these two are small and the
        most sensitive to pruning."""
        return [(f"{name}.weight", module.weight) for name, module in weight_layers(model)[1:-1]]

    def describe(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "dataset": self.dataset.name,
                "num_classes": self.dataset.num_classes, "input_shape": list(self.input_shape)}
