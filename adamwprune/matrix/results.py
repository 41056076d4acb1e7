"""A matrix's results folder: ``summary.json`` (rewritten atomically after every run) and one
run directory per run (``<results>/<project>/<run name>``).

summary.json::

    {"matrix": id, "model", "project", "created", "seeds", "config": {...the .config values...},
     "skipped": ["adamw x state: ..."],
     "runs": [{"name", "optimizer", "pruning_method", "target_sparsity", "seed", "flags",
               "status": pending|running|ok|failed|interrupted, "exit_code", "wall_seconds",
               "iterations", "stop_reason", "stopped_by_time_limit", "best_metrics", "final_metrics",
               "peak_rss_mb", "peak_gpu_mb", "run_dir", "trackio", "wandb_group"}]}
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import orjson

from adamwprune.errors import UserError
from adamwprune.fileio import atomic_write_bytes
from adamwprune.matrix.plan import Combination

SUMMARY_NAME = "summary.json"
RESULTS_PREFIX = "test_matrix_results_"
TRAIN_LOG = "train.log"  # a run's output when runs go in parallel (in its run directory)
DONE = ("ok",)


def config_snapshot(cfg) -> dict:
    """The configuration values that define a matrix (everything .config holds)."""
    return {name: value for name, value in sorted(vars(cfg).items()) if not name.startswith("_")}


def config_differences(saved: dict, now: dict) -> list[str]:
    keys = sorted(set(saved) | set(now))
    return [f"CONFIG_{k} was {saved.get(k)!r}, is {now.get(k)!r}" for k in keys if saved.get(k) != now.get(k)]


class Results:
    """summary.json of one matrix, kept in memory and written after each change."""

    def __init__(self, directory: Path, data: dict):
        self.directory = directory
        self.data = data
        self.by_name = {run["name"]: run for run in data["runs"]}

    @classmethod
    def create(cls, directory: Path, matrix_id: str, cfg, seeds: int, runs: list[tuple[Combination, str, list[str]]],
               skipped: list[str], project: str) -> "Results":
        directory.mkdir(parents=True)
        data = {"matrix": matrix_id, "model": cfg.MODEL, "project": project,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seeds": seeds,
                "config": config_snapshot(cfg), "skipped": skipped,
                "runs": [{"name": name, **asdict(combination), "flags": flags, "status": "pending"}
                         for combination, name, flags in runs]}
        results = cls(directory, data)
        results.write()
        return results

    @classmethod
    def read(cls, directory: Path) -> "Results":
        """An earlier matrix's summary.json."""
        path = directory / SUMMARY_NAME
        try:
            data = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            raise UserError(f"{path} not found: give a test_matrix_results_* folder of an earlier matrix") from None
        except orjson.JSONDecodeError as err:
            raise UserError(f"{path} is not valid JSON ({err})") from None
        if not isinstance(data, dict) or not {"matrix", "config", "runs", "seeds"} <= set(data):
            raise UserError(f"{path} is not a test matrix summary")
        return cls(directory, data)

    @classmethod
    def load(cls, directory: Path, cfg, seeds: int) -> "Results":
        """An earlier matrix to continue; refused when the configuration differs from its own."""
        data = cls.read(directory).data
        differences = config_differences(data["config"], config_snapshot(cfg))
        if data["seeds"] != seeds:
            differences.insert(0, f"SEEDS was {data['seeds']}, is {seeds}")
        if differences:
            more = f" (and {len(differences) - 1} more)" if len(differences) > 1 else ""
            raise UserError(f"cannot continue {directory}: the configuration differs from the one it ran with: "
                            f"{differences[0]}{more}; restore it, or start a new matrix")
        return cls(directory, data)

    def update(self, name: str, **fields) -> None:
        self.by_name[name].update(fields)
        self.write()

    def write(self) -> None:
        atomic_write_bytes(self.directory / SUMMARY_NAME,
                           orjson.dumps(self.data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for run in self.data["runs"]:
            counts[run["status"]] = counts.get(run["status"], 0) + 1
        return counts


def read_run_outcome(run_dir: Path) -> dict:
    """What a finished run left: its result.json (iterations, stop reason, best metrics, peak
    memory) and the last value of each ``final/`` metric in its journal."""
    from adamwprune.tracking.journal import JOURNAL_NAME, read_journal
    from adamwprune.train.cli import RESULT_NAME

    outcome: dict = {}
    try:
        result = orjson.loads((run_dir / RESULT_NAME).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        result = {}
    for key in ("iterations", "stop_reason", "best_metrics", "peak_rss_mb", "peak_gpu_mb"):
        if key in result:
            outcome[key] = result[key]
    if "stop_reason" in result:
        outcome["stopped_by_time_limit"] = result["stop_reason"] == "max_time"
    final: dict = {}
    if (run_dir / JOURNAL_NAME).exists():
        for record in read_journal(run_dir / JOURNAL_NAME):
            final.update({k: v for k, v in record.get("metrics", {}).items() if k.startswith("final/")})
    outcome["final_metrics"] = final
    return outcome
