"""Set-up (scripts/setup_venv.py, run by make before .venv exists) and the entry points' one-line
answer when they are started without their dependencies (issue 11: first run as a newcomer).

Nothing here installs anything: the set-up tests check the commands it would run."""

from __future__ import annotations

import ast
import os
import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from helpers import REPO

SCRIPT = REPO / "scripts" / "setup_venv.py"
# make reads these from the environment too (CI exports TORCH_INDEX_URL and TORCH_REQUIREMENT):
# the Makefile tests give make a user's plain environment.
MAKE_ENV = {k: v for k, v in os.environ.items()
            if k not in {"TORCH_INDEX_URL", "TORCH_REQUIREMENT", "EXTRAS", "VENV", "PYTHON", "MAKEFLAGS"}}


def _load():
    spec = importlib.util.spec_from_file_location("setup_venv", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["setup_venv"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


sv = _load()
VENV = Path("/work/x/.venv")
VPY = str(VENV / "bin" / "python")


def never():
    raise AssertionError("not to be called in this case")


def request(*extras: str, torch: str = "torch", index: str | None = None):
    return sv.Request(venv=VENV, extras=sv.parse_extras(extras), torch_requirement=torch, torch_index_url=index)


def state(exists: bool = True, record: dict | None = None, driver=False, torch=(False, None), digest="d1"):
    return sv.State(python="/usr/bin/python3", venv_python_exists=exists, record=record,
                    pyproject_digest=digest,
                    nvidia_driver=driver if callable(driver) else (lambda: driver),
                    torch_probe=torch if callable(torch) else (lambda: torch), root=Path("/repo"))


def commands(steps) -> list[list[str]]:
    return [step.argv for step in steps if step.argv]


# --- which torch ---------------------------------------------------------------------------

def test_a_fresh_venv_without_an_nvidia_driver_gets_the_cpu_build():
    steps = sv.plan(request("trackio"), state(exists=False, driver=False, torch=never))
    assert commands(steps) == [
        ["/usr/bin/python3", "-m", "venv", str(VENV)],
        [VPY, "-m", "pip", "install", "--upgrade", "pip"],
        [VPY, "-m", "pip", "install", "torch", "--index-url", "https://download.pytorch.org/whl/cpu"],
        [VPY, "-m", "pip", "install", "-e", "/repo[trackio]"],
    ]
    say = steps[2].message  # one line: what, from where, why, and how to choose otherwise
    assert "\n" not in say and "CPU build" in say and "no NVIDIA driver" in say and "TORCH_INDEX_URL=" in say
    assert [step.message for step in steps][3] == "installing adamwprune (editable) with trackio"


def test_with_an_nvidia_driver_torch_comes_from_pypi():
    steps = sv.plan(request("trackio"), state(exists=False, driver=True))
    torch_step, = [s for s in steps if s.what == "torch"]
    assert torch_step.argv == [VPY, "-m", "pip", "install", "torch"]
    assert "NVIDIA driver" in torch_step.message and "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" \
        in torch_step.message


@pytest.mark.parametrize("driver", [False, True])
def test_torch_index_url_wins_over_the_machine(driver):
    url = "https://download.pytorch.org/whl/cu126"
    steps = sv.plan(request(index=url), state(driver=never))
    assert commands(steps)[0] == [VPY, "-m", "pip", "install", "torch", "--index-url", url]
    assert url in steps[0].message


def test_an_empty_torch_index_url_is_the_default_index_as_ci_pins_it():
    steps = sv.plan(request("dev", "all", torch="torch==2.13.0", index=""), state(exists=False, driver=never))
    assert [VPY, "-m", "pip", "install", "torch==2.13.0"] in commands(steps)
    assert commands(steps)[-1] == [VPY, "-m", "pip", "install", "-e", "/repo[dev,trackio,wandb]"]


def test_a_torch_that_satisfies_the_requirement_is_kept():
    steps = sv.plan(request("trackio", torch="torch==2.13.0"),
                    state(record=None, driver=never, torch=(True, "2.13.0+cpu")))
    assert commands(steps) == [[VPY, "-m", "pip", "install", "-e", "/repo[trackio]"]]
    assert steps[0].message == f"torch 2.13.0+cpu in {VENV} satisfies 'torch==2.13.0': kept"


def test_a_torch_that_does_not_satisfy_it_is_replaced_and_said_so():
    steps = sv.plan(request(torch="torch==2.13.0", index=""), state(torch=(False, "2.12.0")))
    assert commands(steps)[0] == [VPY, "-m", "pip", "install", "torch==2.13.0"]
    assert steps[0].message.endswith("replaces torch 2.12.0")


def test_the_probe_reads_the_requirement_like_pip(tmp_path):
    """The probe in the venv's python: torch==2.13.0 is met by 2.13.0+cpu, not by another version."""
    from importlib.metadata import version

    installed = version("torch")  # e.g. 2.13.0+cpu, as torch.__version__ says
    assert sv.probe_torch(Path(sys.executable), f"torch=={installed.split('+')[0]}") == (True, installed)
    assert sv.probe_torch(Path(sys.executable), "torch<2.0")[0] is False
    assert sv.probe_torch(tmp_path / "no-python", "torch") == (False, None)


# --- nothing twice ---------------------------------------------------------------------------

def test_nothing_to_do_when_the_record_covers_the_request():
    record = {"pyproject": "d1", "extras": ["dev", "trackio", "wandb"], "torch": "torch"}
    for asked in (request("trackio"), request("all"), request("dev", "wandb"), request()):
        assert sv.plan(asked, state(record=record, driver=never, torch=never)) == []


def test_a_new_extra_installs_the_project_again_with_all_extras_and_keeps_torch():
    record = {"pyproject": "d1", "extras": ["trackio"], "torch": "torch"}
    steps = sv.plan(request("wandb"), state(record=record, driver=never, torch=(True, "2.13.0+cpu")))
    assert commands(steps) == [[VPY, "-m", "pip", "install", "-e", "/repo[trackio,wandb]"]]
    assert sv.new_record(request("wandb"), state(record=record))["extras"] == ["trackio", "wandb"]


def test_a_changed_pyproject_installs_the_project_again():
    record = {"pyproject": "old", "extras": ["trackio"], "torch": "torch"}
    steps = sv.plan(request("trackio"), state(record=record, torch=(True, "2.13.0")))
    assert commands(steps) == [[VPY, "-m", "pip", "install", "-e", "/repo[trackio]"]]


def test_another_torch_requirement_only_checks_torch():
    record = {"pyproject": "d1", "extras": ["dev", "trackio", "wandb"], "torch": "torch==2.13.0"}
    steps = sv.plan(request("dev", "all"), state(record=record, torch=(True, "2.13.0+cpu")))
    assert commands(steps) == [] and len(steps) == 1  # a note, nothing installed


def test_the_empty_stamp_of_an_older_makefile_is_no_record(tmp_path):
    (tmp_path / ".installed").write_text("")
    assert sv.read_record(tmp_path / ".installed") is None
    steps = sv.plan(request("trackio"), state(record=None, torch=(True, "2.13.0")))
    assert commands(steps) == [[VPY, "-m", "pip", "install", "-e", "/repo[trackio]"]]


def test_check_says_what_would_run_and_changes_nothing(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--venv", str(tmp_path / "v"), "--check", "trackio"],
                          capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.splitlines()[0] == f"setup: would run: creating {tmp_path / 'v'} with {sys.executable}"
    assert "installing adamwprune (editable) with trackio" in proc.stdout
    assert not (tmp_path / "v").exists()


# --- extras --------------------------------------------------------------------------------

def test_extras_agree_with_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]
    assert set(sv.EXTRAS) == set(optional)
    for name, parts in sv.EXTRAS.items():
        assert sorted(optional[name]) == sorted(r for part in parts for r in optional[part]), name
    core = " ".join(project["dependencies"])
    assert "trackio" not in core and "wandb" not in core  # trackers are extras


def test_parse_extras():
    assert sv.parse_extras(["dev all"]) == {"dev", "trackio", "wandb"}
    assert sv.parse_extras(["", "trackio,dev", "+"]) == {"trackio", "dev"}
    with pytest.raises(SystemExit, match="unknown extra 'tensorboard'"):
        sv.parse_extras(["tensorboard"])


def test_the_configured_trackers_are_installed_for_make(tmp_path):
    dotconfig = tmp_path / ".config"
    assert sv.configured_trackers(dotconfig) == set()  # no configuration yet
    dotconfig.write_text("CONFIG_ENABLE_WANDB=y\n# CONFIG_ENABLE_TRACKIO is not set\n")
    assert sv.configured_trackers(dotconfig) == {"wandb"}
    assert sv.configured_trackers(dotconfig, ["GPU_MONITOR=y", "TRACKER=Both"]) == {"trackio", "wandb"}
    assert sv.configured_trackers(dotconfig, ["TRACKER=none"]) == set()
    assert sv.configured_trackers(dotconfig, ["TRACKER=trackio, wandb"]) == {"trackio", "wandb"}


def test_the_digits_and_submitit_are_installed_for_a_configuration_that_needs_them(tmp_path):
    dotconfig = tmp_path / ".config"
    assert sv.configured_extras(dotconfig) == set()
    dotconfig.write_text('CONFIG_DATASET="digits"\nCONFIG_MATRIX_EXECUTOR_SLURM=y\n')
    assert sv.configured_extras(dotconfig) == {"digits", "slurm"}
    assert sv.configured_extras(dotconfig, ["EXECUTOR=local"]) == {"digits"}  # make's EXECUTOR= wins
    dotconfig.write_text("CONFIG_MATRIX_EXECUTOR_LOCAL=y\n")
    assert sv.configured_extras(dotconfig, ["TRACKER=wandb", "EXECUTOR= Slurm"]) == {"slurm"}


def test_nvidia_driver_detection():
    assert sv.nvidia_driver_present(lambda name: None, lambda path: False) is False
    assert sv.nvidia_driver_present(lambda name: "/usr/bin/nvidia-smi", lambda path: False) is True
    assert sv.nvidia_driver_present(lambda name: None, lambda path: path == "/proc/driver/nvidia") is True


@pytest.mark.parametrize("target, extras", [
    ("demo", ["trackio"]), ("test", ["dev", "all"]), ("venv", ["trackio"]), ("wandb-test", ["wandb"]),
    ("defconfig", []), ("all", ["--configured-trackers", ".config"]),
])
def test_each_make_target_asks_for_what_it_uses(tmp_path, target, extras):
    proc = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(tmp_path), "-f", str(REPO / "Makefile"),
                           target, "DEFCONFIG=x"], capture_output=True, text=True, timeout=60, env=MAKE_ENV)
    assert proc.returncode == 0, proc.stderr
    setup = proc.stdout.replace("\\\n", " ").splitlines()[0].split()  # the set-up command
    assert setup[:2] == ["python3", str(SCRIPT)], proc.stdout
    assert setup[setup.index("--extras") + 2:] == extras, proc.stdout  # after make's EXTRAS ("")


def test_make_passes_torch_index_url_only_when_given(tmp_path):
    def setup_line(*args):
        out = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(tmp_path), "-f", str(REPO / "Makefile"), "venv", *args],
                             capture_output=True, text=True, timeout=60, check=True, env=MAKE_ENV).stdout
        return out.replace("\\\n", " ").splitlines()[0]

    assert "--torch-index-url" not in setup_line()
    assert '--torch-index-url=""' in setup_line("TORCH_INDEX_URL=")
    assert '--torch "torch==2.13.0"' in setup_line("TORCH_REQUIREMENT=torch==2.13.0")


def test_the_script_uses_the_standard_library_only():
    tree = ast.parse(SCRIPT.read_text())
    names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    names |= {node.module.split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert names <= set(sys.stdlib_module_names) | {"__future__"}, names


# --- entry points without their dependencies ---------------------------------------------------

def bare_python(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """This python without site-packages (-S): like a system python3 that has no torch."""
    return subprocess.run([sys.executable, "-S", *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"})


def test_the_trainer_without_torch_says_how_to_set_up_in_one_line():
    proc = bare_python("gpt2/train.py", "--dataset", "pydocs", "--max-iters", "1")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    line, = proc.stderr.splitlines()
    assert line.startswith(f"gpt2/train.py: error: torch, numpy, orjson, tiktoken are not installed in this "
                           f"Python ({sys.executable}): run `make venv` and use .venv/bin/python"), line


def test_the_trainer_from_elsewhere_names_the_repository(tmp_path):
    line, = bare_python(str(REPO / "gpt2/train.py"), cwd=tmp_path).stderr.splitlines()
    assert f"run `make -C {REPO} venv` and use {REPO / '.venv/bin/python'}" in line


def test_the_trainer_help_works_without_torch():
    proc = bare_python("gpt2/train.py", "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: gpt2/train.py")


def test_replay_without_its_dependencies_says_how_to_set_up_in_one_line():
    proc = bare_python("-m", "adamwprune", "replay", "runs/x/y", "--tracker", "trackio")
    assert proc.returncode == 2, proc.stderr
    line, = proc.stderr.splitlines()
    assert line.startswith("adamwprune: error: orjson is not installed in this Python") and "make venv" in line
