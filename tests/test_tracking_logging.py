"""Library messages go through logging ("adamwprune"), never stdout; the default run directory;
a selected tracker that is not installed."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from adamwprune.errors import UserError
from adamwprune.tracking import ExperimentTracker, open_tracker
from adamwprune.tracking.commands import trackio_show_command, tracker_install_command
from adamwprune.tracking.naming import default_run, project_name
from helpers import child_env

FAILING_BACKEND = textwrap.dedent("""
    from adamwprune.tracking.backends import Backend

    class FailingStartBackend(Backend):
        def start(self):
            raise ConnectionError("server unreachable")
""")


def _program(tmp_path: Path, body: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """A program that writes data to stdout and uses ExperimentTracker; cwd tmp_path."""
    (tmp_path / "failing_backend.py").write_text(FAILING_BACKEND)
    code = "import logging, sys\n" + textwrap.dedent(body) + "\nprint('DATA 1')\n"
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=180, env=child_env(PYTHONPATH=str(tmp_path), **(env or {})))


@pytest.mark.slow
def test_a_real_trackio_run_prints_nothing_on_stdout(tracking_env, monkeypatch):
    done = _program(tracking_env, """
        from adamwprune.tracking import ExperimentTracker
        print('DATA 0', flush=True)
        with ExperimentTracker('trackio', project='p-out', run_name='r') as tracker:
            tracker.log({'train_loss': 1.0}, step=1)
            tracker.log({'train_loss': float('nan')}, step=2)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "DATA 0\nDATA 1\n"  # the program's data, and only that
    err = done.stderr.splitlines()
    assert "tracking: trackio | project p-out | run r | run dir runs/p-out/r" in err
    assert "tracking: run r finished; run dir runs/p-out/r" in err
    monkeypatch.chdir(tracking_env)  # the hint is spelled for the program's directory (and PATH)
    assert f"tracking: trackio: 2 of 2 records confirmed in its SQLite store -> {trackio_show_command('p-out')}" in err
    assert any("train_loss is nan at step 2" in line for line in err)


def test_logger_level_silences_the_status_lines_and_warning_keeps_failures(tmp_path):
    run = """
        logging.getLogger('adamwprune').setLevel(logging.{level})
        from adamwprune.tracking import ExperimentTracker
        with ExperimentTracker('none', project='p', run_name='r{level}',
                               extra_backends={{'broken': 'failing_backend:FailingStartBackend'}}) as t:
            t.log({{'x': 1.0}}, step=0)
    """
    quiet = _program(tmp_path, run.format(level="ERROR"))
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == "DATA 1\n" and quiet.stderr == ""
    warnings = _program(tmp_path, run.format(level="WARNING"))
    assert warnings.stdout == "DATA 1\n"
    lines = warnings.stderr.splitlines()
    assert not [line for line in lines if line.startswith("tracking: run ") or " | project " in line]
    assert any("broken failed at start (ConnectionError: server unreachable)" in line for line in lines)
    assert any(line.startswith("tracking: broken: 0 of 1 records sent, unconfirmed (this backend cannot read its "
                          "storage back), 1 failed (failed:") for line in lines)
    assert (tmp_path / "runs" / "p" / "rERROR" / "metrics.jsonl").is_file()


def test_configured_logging_takes_over(tmp_path):
    done = _program(tmp_path, """
        logging.basicConfig(stream=sys.stdout, level=logging.INFO, format='LOG %(name)s %(levelname)s %(message)s')
        from adamwprune.tracking import ExperimentTracker
        with ExperimentTracker('none', project='p', run_name='r') as t:
            t.log({'x': 1.0}, step=0)
    """)
    assert done.returncode == 0 and done.stderr == ""  # no second copy from the fallback handler
    assert done.stdout.splitlines() == [
        "LOG adamwprune.tracking INFO tracking: none (journal only) | project p | run r | run dir runs/p/r",
        "LOG adamwprune.tracking INFO tracking: run r finished; run dir runs/p/r",
        "DATA 1"]


def test_in_process_lines_reach_the_logger_not_stdout(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO, logger="adamwprune"):
        with ExperimentTracker("none", project="p", run_name="r") as tracker:
            tracker.log({"x": 1.0}, step=0)
    assert capsys.readouterr().out == ""
    records = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert ("adamwprune.tracking", "INFO", "tracking: run r finished; run dir runs/p/r") in records


def test_run_dir_defaults_to_runs_project_run_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tracker = ExperimentTracker("none")
    tracker.finish()
    assert re.fullmatch(r"experiment-[0-9a-f]{5}", tracker.project)
    assert tracker.project == project_name("experiment")
    assert re.fullmatch(r"experiment_\d{8}-\d{6}", tracker.run_name)
    assert tracker.run_dir == Path("runs") / tracker.project / tracker.run_name
    assert (tmp_path / tracker.run_dir / "metrics.jsonl").is_file()

    named = ExperimentTracker("none", config={"model": "gpt2", "optimizer": "adamw"})
    named.finish()
    assert named.project == project_name("gpt2") and named.run_name.startswith("gpt2_adamw_")
    given = ExperimentTracker("none", project="p", run_name="r")
    given.finish()
    assert given.run_dir == Path("runs/p/r")
    by_dir = ExperimentTracker("none", run_dir=tmp_path / "elsewhere" / "my-run")
    by_dir.finish()
    assert by_dir.run_name == "my-run" and by_dir.run_dir == tmp_path / "elsewhere" / "my-run"
    with pytest.raises(UserError, match="resume=True continues a run"):
        ExperimentTracker("none", resume=True)  # a new timestamped name would resume nothing


def test_default_run_names_never_collide(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = {"model": "gpt2", "optimizer": "sgd"}
    first = default_run(config, when=0.0)
    first[2].mkdir(parents=True)
    (first[2] / "metrics.jsonl").write_text("")
    second = default_run(config, when=0.0)
    assert second[1] == f"{first[1]}-2" and second[2] == first[2].with_name(f"{first[1]}-2")
    assert default_run({"model": "../x"}, project="p", when=0.0)[1].startswith("experiment_")


BLOCKED = """
    import sys
    for name in sys.argv[1].split(','):
        sys.modules[name] = None  # 'import name' fails, as where it is not installed
    from adamwprune.errors import run_main
    from adamwprune.tracking import ExperimentTracker
    def main(argv):
        ExperimentTracker(sys.argv[2], project='p', run_name='r', run_dir='the-run').finish()
        print('tracked')
    sys.exit(run_main(main))
"""


@pytest.mark.parametrize("blocked,selected,extra", [
    ("wandb", "wandb", "wandb"), ("trackio", "trackio", "trackio"), ("wandb", "both", "wandb"),
    ("trackio,wandb", "both", "all")])
def test_a_tracker_that_is_not_installed_is_one_line_naming_the_install_command(
        tmp_path, blocked, selected, extra):
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(BLOCKED), blocked, selected], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env=child_env(WANDB_MODE="offline"))
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert re.search(rf"install (it|them) with `\S*pip install -e '\S*\[{extra}\]'`", done.stderr), done.stderr
    assert not (tmp_path / "the-run").exists()  # refused before anything was created


def test_tracker_none_needs_neither_library(tmp_path):
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(BLOCKED), "trackio,wandb", "none"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, env=child_env())
    assert done.returncode == 0 and done.stdout == "tracked\n", done.stderr


def test_every_rank_refuses_a_missing_tracker_and_replay_too(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(UserError, match=re.escape(tracker_install_command(["wandb"]))):
        open_tracker("wandb", project="p", run_name="r", run_dir=tmp_path / "r")
    from adamwprune.tracking.replay import replay

    with pytest.raises(UserError, match=r"wandb is not installed"):
        replay(tmp_path / "no-run", "wandb")


def test_the_trainer_refuses_a_missing_tracker_before_it_opens_the_data(tmp_path):
    trainer = Path(__file__).resolve().parents[1] / "gpt2" / "train.py"
    script = ("import runpy, sys\nsys.modules['wandb'] = None\n"
              f"sys.argv = [{str(trainer)!r}, '--tracker', 'wandb', '--dataset', 'finewebedu', "
              f"'--data-dir', {str(tmp_path / 'no-data')!r}]\n"
              f"runpy.run_path({str(trainer)!r}, run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env=child_env())
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    line, = done.stderr.splitlines()
    assert "wandb is not installed" in line and re.search(r"install it with `\S*pip install -e '\S*\[wandb\]'`", line), line
