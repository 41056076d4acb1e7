"""``<run_dir>/run.json``: what a delivery process or a replay needs to open the run."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

from adamwprune.fileio import atomic_write_bytes

RUN_INFO_NAME = "run.json"


@dataclass
class RunInfo:
    """What every backend needs to open the run (stored in ``<run_dir>/run.json``)."""

    project: str
    run_name: str
    run_dir: Path
    config: dict = field(default_factory=dict)
    wandb_id: str = ""
    wandb_entity: str | None = None
    wandb_offline: bool = False
    resume: bool = False
    group: str | None = None     # runs compared together (a test matrix): W&B's group, Trackio's group
    tags: list[str] = field(default_factory=list)  # W&B tags; in Trackio's run config
    # the GPU monitor's source and devices (index as the process sees it, physical NVML index, UUID,
    # name, MiB) of the latest session that sampled GPUs (adamwprune.gpu.GpuMonitor.describe)
    gpus: dict | None = None


def new_wandb_id() -> str:
    return uuid.uuid4().hex[:12]


def write_run_info(info: RunInfo) -> None:
    data = asdict(info)
    data["run_dir"] = str(info.run_dir)
    atomic_write_bytes(info.run_dir / RUN_INFO_NAME,
                       orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY,
                                    default=str))


def read_run_info(run_dir: Path) -> RunInfo:
    from adamwprune.errors import UserError

    path = Path(run_dir) / RUN_INFO_NAME
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise UserError(f"{path} not found; give the run directory that ExperimentTracker "
                        "printed at start (it holds run.json and metrics.jsonl)") from None
    except orjson.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON ({err}); restore it or recreate it") from None
    except OSError as err:
        raise UserError(f"cannot read {path} ({err.strerror or err})") from None
    fields = {f.name for f in dataclasses.fields(RunInfo)}
    if not isinstance(data, dict) or not {"project", "run_name"} <= set(data) or set(data) - fields:
        raise UserError(f"{path} is not a run's run.json (it needs project and run_name, and holds only "
                        f"{', '.join(sorted(fields - {'run_dir'}))}); restore it from the run's first session")
    data["run_dir"] = Path(run_dir)
    return RunInfo(**data)
