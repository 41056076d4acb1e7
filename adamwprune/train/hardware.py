"""Peak dense bf16 tensor FLOP/s of common NVIDIA GPUs, for model FLOPs utilization (MFU).

Values are the vendors' dense (no 2:4 sparsity) bf16 figures. A GPU not in the
table gets no MFU metric rather than a made-up one.
"""

from __future__ import annotations

# Matched in order against torch.cuda.get_device_name(); more specific names first.
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),          # SXM
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("A10G", 70e12),           # AWS variant of the A10, lower tensor throughput (baseten A10 vs A10G)
    ("A10", 125e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("A6000", 155e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
    ("V100", 125e12),          # fp16 tensor (V100 has no bf16); close enough for MFU
)


def peak_bf16_flops(device_name: str) -> float | None:
    """Peak FLOP/s for a device name such as 'NVIDIA H100 80GB HBM3', or None if unknown."""
    for needle, flops in PEAK_BF16_FLOPS:
        if needle.lower() in device_name.lower():
            return flops
    return None


def cuda_peak_flops(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    import torch

    return peak_bf16_flops(torch.cuda.get_device_name(device))
