"""The image classifiers' families: LeNet-5 (``lenet5/train.py``) and ResNet-50, or ResNet-18 with
``--model-name resnet18`` (``resnet50/train.py``). The adapter is ``train/classifier.py``; nothing
here imports torch, so ``--help`` works without it."""

from __future__ import annotations

from adamwprune.train.family import ModelFamily


def make_adapter(settings):
    from adamwprune.data.images import open_dataset
    from adamwprune.train.classifier import ClassifierAdapter
    from adamwprune.train.distributed import resolve_device

    model_name = settings.model_name if settings.applies("model_name") else settings.model
    adapter = ClassifierAdapter(open_dataset(settings.dataset, settings.data_dir), model_name, settings,
                                channels_last=resolve_device(settings.device).startswith("cuda"))
    adapter.check()
    return adapter


LENET5 = ModelFamily("lenet5", "Train LeNet-5 on MNIST or the offline digits with the shared AdamWPrune loop, "
                     "tracked in Trackio and/or W&B.", make_adapter)
RESNET50 = ModelFamily("resnet50", "Train ResNet-50 (or ResNet-18: --model-name resnet18) on CIFAR-100, CIFAR-10 "
                       "or the offline digits with the shared AdamWPrune loop, tracked in Trackio and/or W&B.",
                       make_adapter)
