"""Image datasets: MNIST's IDX files and CIFAR's pickled tar.gz written here in their real formats
(small), downloaded from a local HTTP server, verified and parsed; damaged, truncated and
mismatched files, and no network, each one line. The offline digits come from scikit-learn."""

from __future__ import annotations

import dataclasses
import gzip
import http.server
import importlib.util
import io
import os
import pickle
import re
import socket
import struct
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from adamwprune.data.images import SOURCES, ImageSource, RemoteFile, md5_of, open_dataset
from adamwprune.errors import UserError
from helpers import REPO

MNIST_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
               "t10k-labels-idx1-ubyte.gz")


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX: 0, 0, type 0x08 (unsigned byte), the number of dimensions, each as a big-endian uint32, the bytes."""
    header = bytes((0, 0, 0x08, array.ndim)) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_mnist(directory: Path, train: int = 12, test: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {"train-images": rng.integers(0, 256, (train, 28, 28)), "train-labels": rng.integers(0, 10, train),
              "t10k-images": rng.integers(0, 256, (test, 28, 28)), "t10k-labels": rng.integers(0, 10, test)}
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        write_idx(directory / f"{name}-idx{array.ndim}-ubyte.gz", array)
    return arrays


def cifar_batch(images: np.ndarray, labels: np.ndarray, label_key: str) -> bytes:
    """A batch as the CIFAR python version pickles it: N x 3072 uint8 rows (red, green, blue planes)."""
    return pickle.dumps({"batch_label": "generated", label_key: [int(x) for x in labels],
                         "data": images.reshape(len(images), 3072), "filenames": [f"{i}.png" for i in range(len(images))]},
                        protocol=2)


def write_tar(path: Path, members: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def write_cifar(data_dir: Path, name: str = "cifar10", per_batch: int = 3, test: int = 4,
                seed: int = 0) -> dict[str, np.ndarray]:
    """CIFAR-10 (five train batches, a test batch, batches.meta) or CIFAR-100 (train, test, meta)."""
    rng = np.random.default_rng(seed)
    classes, key = (10, "labels") if name == "cifar10" else (100, "fine_labels")
    folder = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
    batches = ([f"data_batch_{i}" for i in range(1, 6)] if name == "cifar10" else ["train"])
    members, train = {}, []
    for batch in batches:
        count = per_batch if name == "cifar10" else 5 * per_batch
        images, labels = rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8), rng.integers(0, classes, count)
        members[f"{folder}/{batch}"] = cifar_batch(images, labels, key)
        train.append((images, labels))
    test_images, test_labels = rng.integers(0, 256, (test, 3, 32, 32), dtype=np.uint8), rng.integers(0, classes, test)
    members[f"{folder}/{'test_batch' if name == 'cifar10' else 'test'}"] = cifar_batch(test_images, test_labels, key)
    members[f"{folder}/{'batches.meta' if name == 'cifar10' else 'meta'}"] = pickle.dumps({"label_names": []}, 2)
    write_tar(data_dir / name / SOURCES[name].files[0].name, members)
    return {"train_images": np.concatenate([i for i, _ in train]), "train_labels": np.concatenate([l for _, l in train]),
            "test_images": test_images, "test_labels": test_labels}


def verified(name: str, data_dir: Path, mirrors: tuple[str, ...] = ()) -> ImageSource:
    """``name``'s source with the MD5s of the files written here (from ``files``, else data_dir/name)."""
    files = tuple(RemoteFile(f.name, md5_of(data_dir / name / f.name)) for f in SOURCES[name].files)
    return dataclasses.replace(SOURCES[name], files=files, mirrors=mirrors)


def serve(directory: Path):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(directory), **kwargs)

        def log_message(self, *args):
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


# --- formats ---------------------------------------------------------------------------------

def test_mnist_idx_files_downloaded_verified_and_parsed(tmp_path, capsys):
    arrays = write_mnist(tmp_path / "site" / "mnist")
    source = verified("mnist", tmp_path / "site")
    server, url = serve(tmp_path / "site" / "mnist")
    try:
        dead = f"http://127.0.0.1:{closed_port()}/"  # the first mirror is down: the second one serves
        ds = dataclasses.replace(source, mirrors=(dead, url)).open(tmp_path / "data", timeout_s=5)
    finally:
        server.shutdown()
    assert files_under(tmp_path / "data") == sorted(f"mnist/{name}" for name in MNIST_NAMES)  # no .part left
    assert ds.shape == (1, 28, 28) and ds.num_classes == 10 and not ds.augment
    assert np.array_equal(ds.train_images[:, 0], arrays["train-images"])
    assert np.array_equal(ds.test_images[:, 0], arrays["t10k-images"])
    assert ds.train_labels.tolist() == arrays["train-labels"].tolist() and ds.train_labels.dtype == np.int64
    assert ds.test_labels.tolist() == arrays["t10k-labels"].tolist()
    assert f"mnist: downloading {url}train-images-idx3-ubyte.gz" in capsys.readouterr().err
    again = source.open(tmp_path / "data", download=False)  # present and verified: no network needed
    assert np.array_equal(again.train_images, ds.train_images)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_pickled_batches_are_parsed_plane_by_plane(tmp_path, name):
    arrays = write_cifar(tmp_path / "data", name)
    ds = verified(name, tmp_path / "data").open(tmp_path / "data", download=False)
    assert ds.shape == (3, 32, 32) and ds.num_classes == (10 if name == "cifar10" else 100) and ds.augment
    for key, value in arrays.items():
        assert np.array_equal(getattr(ds, key), value), key
    # the first 1024 bytes of a row are the red plane, row by row
    row = np.frombuffer(arrays["test_images"][0].tobytes(), np.uint8)
    assert np.array_equal(ds.test_images[0, 0].ravel(), row[:1024])


# --- damaged files: one line each ----------------------------------------------------------------

def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_damaged_idx_files(tmp_path):
    data = tmp_path / "data"
    arrays = write_mnist(data / "mnist")
    images = data / "mnist" / "train-images-idx3-ubyte.gz"
    blob = images.read_bytes()
    cases = {
        "truncated": (blob[: len(blob) // 2], r"is not a complete gzip file \(EOFError"),
        "not gzip": (b"P5 28 28 255\n" + bytes(100), r"is not a complete gzip file \(BadGzipFile"),
        "wrong magic": (gzip.compress(b"\x00\x00\x0d\x03" + bytes(40)), r"is not an IDX file of 3-dimensional "
                        r"unsigned bytes \(it starts with 00000d03\)"),
        "short data": (gzip.compress(struct.pack(">4B3I", 0, 0, 8, 3, 12, 28, 28) + bytes(100)),
                       r"holds 100 values, its header says 12x28x28 = 9,408 \(a truncated file\?\)"),
    }
    for case, (content, message) in cases.items():
        images.write_bytes(content)
        with pytest.raises(UserError) as excinfo:
            verified("mnist", data).open(data, download=False)
        assert re.search(f"^{re.escape(str(images))} {message}", one_line(excinfo)), case
        assert one_line(excinfo).endswith("delete it and run `python -m adamwprune.data prepare mnist "
                                          f"--data-dir {data}`"), case
    write_idx(images, arrays["train-images"][:5])  # well formed, but 5 images for 12 labels
    with pytest.raises(UserError, match=r"mnist's train split .* has images of shape \(5, 1, 28, 28\) and 12 labels"):
        verified("mnist", data).open(data, download=False)


def test_damaged_cifar_archives(tmp_path):
    data = tmp_path / "data"
    write_cifar(data)
    archive = data / "cifar10" / "cifar-10-python.tar.gz"
    whole = archive.read_bytes()
    archive.write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(UserError) as excinfo:
        verified("cifar10", data).open(data, download=False)
    assert re.match(f"{re.escape(str(archive))} is not a complete tar.gz archive", one_line(excinfo))

    folder = "cifar-10-batches-py"
    good = cifar_batch(np.zeros((2, 3, 32, 32), np.uint8), np.zeros(2), "labels")
    batches = {f"{folder}/data_batch_{i}": good for i in range(1, 6)}
    write_tar(archive, {**batches})  # no test_batch
    with pytest.raises(UserError, match=f"has no {folder}/test_batch: not the cifar10 python version"):
        verified("cifar10", data).open(data, download=False)

    marker = tmp_path / "executed"
    evil = pickle.dumps(_Exploit(marker), protocol=2)  # would run `touch marker` if unpickled freely
    for content, message in ((evil, r"posix.system has no place in a CIFAR batch"),
                             (good[: len(good) // 2], r"UnpicklingError|EOFError"),
                             (pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}, 2),
                              r"'data' is \(2, 100\), not N x 3072 uint8")):
        write_tar(archive, {**batches, f"{folder}/test_batch": content})
        with pytest.raises(UserError) as excinfo:
            verified("cifar10", data).open(data, download=False)
        assert re.search(f"{folder}/test_batch is not a CIFAR batch .*{message}", one_line(excinfo))
    assert not marker.exists()


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# --- checksums and downloads ----------------------------------------------------------------------

def test_a_file_that_is_not_the_published_one_is_refused(tmp_path):
    data = tmp_path / "data"
    write_mnist(data / "mnist")
    with pytest.raises(UserError) as excinfo:  # the real checksums: these files are not MNIST's
        SOURCES["mnist"].open(data, download=False)
    path = data / "mnist" / "train-images-idx3-ubyte.gz"
    assert one_line(excinfo) == (f"{path} is not the published mnist file (MD5 {md5_of(path)}, expected "
                                 f"f68b3c2dcbeaaa9fbdd348bbdeb94873): delete it and run `python -m "
                                 f"adamwprune.data prepare mnist --data-dir {data}`")


def test_a_download_with_the_wrong_checksum_is_not_kept(tmp_path):
    write_cifar(tmp_path / "site")
    source = dataclasses.replace(SOURCES["cifar10"], files=(RemoteFile("cifar-10-python.tar.gz", "0" * 32),))
    server, url = serve(tmp_path / "site" / "cifar10")
    try:
        with pytest.raises(UserError) as excinfo:
            dataclasses.replace(source, mirrors=(url,)).open(tmp_path / "data", timeout_s=5)
    finally:
        server.shutdown()
    size = (tmp_path / "site/cifar10/cifar-10-python.tar.gz").stat().st_size
    assert re.match(rf"cannot download cifar10 \({url}cifar-10-python.tar.gz sent {size:,} bytes whose MD5 is "
                    rf"[0-9a-f]{{32}}, not the published 0{{32}}\); fetch cifar-10-python.tar.gz from {url} and "
                    rf"put it in {tmp_path}/data/cifar10/", one_line(excinfo))
    assert files_under(tmp_path / "data") == []


def offline_env(tmp_path: Path) -> dict[str, str]:
    """No network for a child process: every proxy points at a closed local port."""
    dead = f"http://127.0.0.1:{closed_port()}"
    env = {k: v for k, v in os.environ.items() if k not in ("ADAMWPRUNE_DATA_DIR", "NO_PROXY", "no_proxy")}
    env.update({var: dead for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")})
    return env


@pytest.mark.parametrize("name, files", [
    ("mnist", ", ".join(MNIST_NAMES) + " from https://ossci-datasets.s3.amazonaws.com/mnist/ and put them"),
    ("cifar100", "cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/ and put it")])
def test_offline_the_prepare_command_says_what_to_fetch_and_where(tmp_path, name, files):
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "adamwprune.data", "prepare", name], cwd=tmp_path,
                          env=offline_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and time.monotonic() - start < 15, proc.stderr
    line, = [line for line in proc.stderr.splitlines() if "downloading" not in line]
    assert re.fullmatch(rf"python -m adamwprune.data: error: cannot download {name} \(https://\S+: "
                        rf"ConnectionRefusedError: .*\); fetch {re.escape(files)} in data/{name}/, "
                        rf"or run `make prepare-data DATASET={name}` on a machine with network", line), line
    assert files_under(tmp_path) == []


def test_info_of_a_dataset_not_downloaded_names_the_command(tmp_path):
    with pytest.raises(UserError, match=r"^cifar10 is not downloaded \(no data/cifar10/cifar-10-python.tar.gz\); "
                                        r"run: make prepare-data DATASET=cifar10$"):
        open_dataset("cifar10", "data", download=False)


# --- digits (offline) ---------------------------------------------------------------------------

def test_digits_are_scikit_learns_upsampled_with_every_fifth_held_out():
    ds = open_dataset("digits")
    assert ds.shape == (1, 32, 32) and ds.train_images.dtype == np.uint8 and not ds.augment
    assert (len(ds.train_labels), len(ds.test_labels)) == (1437, 360)
    assert sorted(set(ds.test_labels.tolist())) == list(range(10))
    sklearn = Path(importlib.util.find_spec("sklearn").origin).parent
    table = np.loadtxt(sklearn / "datasets/data/digits.csv.gz", delimiter=",")
    assert ds.test_labels.tolist() == table[::5, 64].astype(int).tolist()
    # a 4x4 block of the upsampled image averages to its 8x8 pixel (bilinear, x4, 0..16 -> 0..255)
    blocks = ds.test_images[0, 0].reshape(8, 4, 8, 4).mean((1, 3))
    assert np.corrcoef(blocks.ravel(), table[0, :64])[0, 1] > 0.95


def test_digits_without_scikit_learn_say_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # how Python marks a module as not importable
    with pytest.raises(UserError, match=r"scikit-learn is not installed: make venv EXTRAS=digits"):
        open_dataset("digits")


def test_the_cli_lists_and_reads_image_datasets():
    proc = subprocess.run([sys.executable, "-m", "adamwprune.data", "list"], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=True)
    assert [line.split()[0] for line in proc.stdout.splitlines()][-4:] == ["mnist", "cifar10", "cifar100", "digits"]
    proc = subprocess.run([sys.executable, "-m", "adamwprune.data", "prepare", "digits"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.splitlines()[-1] == "digits: train 1,437 images, test 360 images, 1x32x32, 10 classes"
