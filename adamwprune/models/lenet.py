"""LeNet-5 in plain PyTorch: two 5x5 convolutions and three fully connected layers on 32x32 input.

The layer sizes are LeCun et al. (1998)'s: C1 6@28x28, S2 6@14x14, C3 16@10x10, S4 16@5x5,
C5 120, F6 84, output 10 (61,706 parameters for one input channel and 10 classes). As is
usual today, the activations are ReLU, the subsampling layers 2x2 max-pooling, and C3 connects
to all six maps of S2 (the paper's sparse C3 table is not kept). MNIST's 28x28 digits are
zero-padded to 32x32, as in the paper; that is the data's business (``train/vision.py``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

INPUT_SIZE = 32


class LeNet5(nn.Module):
    input_size = INPUT_SIZE

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, kernel_size=5)   # 32 -> 28
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)            # 14 -> 10
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)
