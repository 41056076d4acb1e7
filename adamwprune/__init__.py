"""AdamWPrune: a training harness for comparing optimizers and pruning methods,
with every run tracked in Trackio and/or Weights & Biases."""

__version__ = "0.1.0"
