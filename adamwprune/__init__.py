"""AdamWPrune: a training harness for comparing optimizers and pruning methods,
with every run tracked in Trackio and/or Weights & Biases."""

__version__ = "0.1.0"


def child_env() -> dict[str, str]:
    """This process's environment, with this package importable by a child Python process
    (a delivery process, a trainer started by make) whatever its working directory."""
    import os
    from pathlib import Path

    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    return env
