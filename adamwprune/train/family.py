"""A model family: what one ``<model>/train.py`` brings to the shared command line and loop.

The family's own settings are the fields of TrainSettings that apply to its model
(``applies_to=("model", (name,))``, e.g. GPT-2's ``--block-size``); its defaults
are ``settings.defaults_for(name)``. Everything else (flags, config, checks,
resume, tracking) is shared: ``<model>/train.py`` is
``sys.exit(run_family(FAMILY, sys.argv[1:]))``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    from adamwprune.train.loop import ModelAdapter
    from adamwprune.train.settings import TrainSettings


@dataclass(frozen=True)
class ModelFamily:
    name: str            # gpt2, lenet5, ...: also the first part of the auto project name
    description: str     # the first line of --help
    # opens the dataset and builds the adapter; raises UserError for what the data cannot take
    make_adapter: Callable[["TrainSettings"], "ModelAdapter"]
    # a family the Kconfig tree does not know brings its datasets (the first is the default)
    # and the defaults where it differs from GPT-2's
    datasets: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from adamwprune.train import settings

        if self.datasets:
            settings.register_model(self.name, self.datasets, self.defaults)
        elif self.name not in settings.DATASETS_BY_MODEL:
            raise ValueError(f"model family {self.name!r} needs its datasets")

    @property
    def prog(self) -> str:
        return f"{self.name}/train.py"
