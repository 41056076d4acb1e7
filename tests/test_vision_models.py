"""LeNet-5 and the CIFAR ResNets: shapes, parameter counts checked against a count of the
architecture done here layer by layer, what is prunable, and the FLOPs behind MFU."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from adamwprune.models.lenet import LeNet5
from adamwprune.models.resnet import ResNet
from adamwprune.train.classifier import weight_layers


def conv(cin: int, cout: int, k: int, bias: bool = False) -> int:
    return k * k * cin * cout + (cout if bias else 0)


def bn(c: int) -> int:
    return 2 * c


def lenet5_count(classes: int = 10) -> int:
    """C1 6@5x5, C3 16@5x5 on all 6 maps, C5 120, F6 84, output: each with biases."""
    return conv(1, 6, 5, True) + conv(6, 16, 5, True) + (400 + 1) * 120 + (120 + 1) * 84 + (84 + 1) * classes


def resnet_count(name: str, classes: int) -> int:
    """Stem 3x3 conv + BN, four stages of (64, 128, 256, 512)-wide blocks, fc; a block whose input
    differs in width or stride has a 1x1 conv + BN shortcut."""
    total, width = conv(3, 64, 3) + bn(64), 64
    depths, expansion = {"resnet18": ((2, 2, 2, 2), 1), "resnet50": ((3, 4, 6, 3), 4)}[name]
    for stage, (planes, depth) in enumerate(zip((64, 128, 256, 512), depths)):
        for block in range(depth):
            stride = 2 if stage and not block else 1
            out = planes * expansion
            if expansion == 1:
                total += conv(width, planes, 3) + bn(planes) + conv(planes, planes, 3) + bn(planes)
            else:
                total += (conv(width, planes, 1) + bn(planes) + conv(planes, planes, 3) + bn(planes)
                          + conv(planes, out, 1) + bn(out))
            if stride != 1 or width != out:
                total += conv(width, out, 1) + bn(out)
            width = out
    return total + (width + 1) * classes


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_lenet5_is_61706_parameters_on_32x32_input():
    model = LeNet5()
    assert params(model) == lenet5_count() == 61_706
    assert model(torch.zeros(3, 1, 32, 32)).shape == (3, 10)
    assert params(LeNet5(in_channels=3, num_classes=100)) == lenet5_count(100) + 2 * 6 * 25


@pytest.mark.parametrize("name, classes, expected", [
    ("resnet18", 10, 11_173_962), ("resnet18", 100, 11_220_132),
    ("resnet50", 10, 23_520_842), ("resnet50", 100, 23_705_252)])
def test_resnet_parameter_counts(name, classes, expected):
    assert params(ResNet(name, num_classes=classes)) == resnet_count(name, classes) == expected


def test_the_cifar_stem_keeps_32x32_until_the_first_stage_and_ends_at_4x4():
    model = ResNet("resnet18").eval()
    sizes = {}

    def record(module, inputs, output):
        sizes[module] = tuple(output.shape)

    for stage in (model.layer1, model.layer4):
        stage.register_forward_hook(record)
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert sizes == {model.layer1: (2, 64, 32, 32), model.layer4: (2, 512, 4, 4)}  # no max-pool, no strided stem
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)


def adapter(model: str, **values):
    """The real adapter of ``model`` on the offline digits (1 channel, 10 classes)."""
    from adamwprune.train.settings import TrainSettings, defaults_for
    from adamwprune.train.vision import make_adapter

    return make_adapter(TrainSettings(**{**defaults_for(model), "dataset": "digits", "device": "cpu", **values}))


def test_prunable_weights_are_every_conv_and_linear_but_the_first_conv_and_the_classifier():
    lenet = adapter("lenet5")
    assert [name for name, _ in lenet.prunable_parameters(lenet.build_model())] == [
        "conv2.weight", "fc1.weight", "fc2.weight"]
    resnet = adapter("resnet50")
    model = resnet.build_model()
    names = [name for name, _ in resnet.prunable_parameters(model)]
    layers = [name for name, _ in weight_layers(model)]
    assert names == [f"{name}.weight" for name in layers[1:-1]] and layers[0] == "conv1" and layers[-1] == "fc"
    assert "layer2.0.shortcut.0.weight" in names and len(names) == 52  # 16 blocks x 3 convs + 4 shortcuts


def test_flops_per_image_count_each_multiply_accumulate_six_times():
    lenet = adapter("lenet5")
    model = lenet.build_model()
    macs = 6 * 28 * 28 * 25 + 16 * 10 * 10 * 150 + 120 * 400 + 84 * 120 + 10 * 84
    assert lenet.flops_per_item(model) == 6 * macs == 2_499_120
    assert model.training  # counted in eval mode, handed back as it was
