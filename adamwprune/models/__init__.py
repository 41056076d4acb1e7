"""Models trained by the harness, in plain PyTorch: GPT-2 (``gpt2``), LeNet-5 (``lenet``), ResNet-18/50 (``resnet``)."""

from __future__ import annotations
