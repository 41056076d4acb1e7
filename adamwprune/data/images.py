"""Image datasets for the classifiers, read from their standard distribution files.

- ``mnist``: LeCun, Cortes & Burges' four IDX files (gzip): 60,000 train and 10,000 test
  digits, 1x28x28.
- ``cifar10`` / ``cifar100``: Krizhevsky's "CIFAR-10/100 python version" tar.gz (pickled
  batches): 50,000 train and 10,000 test images, 3x32x32, 10 / 100 classes (CIFAR-100's fine
  labels).
- ``digits``: offline, no download: scikit-learn's bundled copy of the UCI handwritten digits
  (1,797 8x8 images of 0..16, E. Alpaydin and C. Kaynak), upsampled bilinearly to 1x32x32;
  image i is a test image when i % 5 == 0 (360), the others train (1,437).

Files live in ``DATA_DIR/<name>/`` exactly as distributed. Opening a dataset downloads the
missing ones (into ``<file>.part``, renamed once complete; one process at a time under a lock,
so the ranks of a torchrun can all ask), checks every file's MD5 against the published one, and
parses it. Anything wrong is one line naming the file and what to do: offline, which files to
fetch and where to put them.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import importlib.util
import io
import math
import os
import pickle
import struct
import sys
import tarfile
import urllib.request
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from adamwprune.data import default_data_dir
from adamwprune.data.net import DEFAULT_TIMEOUT_S, _one_line, call_with_deadline
from adamwprune.data.tokens import prepare_command
from adamwprune.errors import UserError

CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    name: str
    md5: str  # as published (MD5 is what MNIST's and CIFAR's distributors give)


@dataclass(frozen=True)
class ImageDataset:
    """A dataset in memory: uint8 images (N, C, H, W) and int64 labels per split."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    augment: bool  # random crop and horizontal flip make sense for it (CIFAR; not digits)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # train images, labels, test images, labels


@dataclass(frozen=True)
class ImageSource:
    """Where a dataset comes from and how its files are read."""

    name: str
    description: str
    shape: tuple[int, int, int]           # (C, H, W) of every image
    num_classes: int
    files: tuple[RemoteFile, ...]         # in DATA_DIR/<name>/; none: nothing to download
    mirrors: tuple[str, ...]              # base URLs, tried in order
    read: Callable[["ImageSource", Path], Arrays]
    augment: bool = False

    def open(self, data_dir: str | Path | None = None, download: bool = True,
             timeout_s: float = DEFAULT_TIMEOUT_S) -> ImageDataset:
        """Download what is missing (``download``), verify every file, parse and check them."""
        data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        directory = data_dir / self.name
        if self.files:
            missing = [remote for remote in self.files if not (directory / remote.name).is_file()]
            if missing and not download:
                raise UserError(f"{self.name} is not downloaded (no {directory / missing[0].name}); "
                                f"run: {prepare_command(self.name, data_dir)}")
            if missing:
                fetch(self, missing, data_dir, timeout_s)
            for remote in self.files:
                verify(self, remote, data_dir)
        train_x, train_y, test_x, test_y = self.read(self, directory)
        for split, images, labels in (("train", train_x, train_y), ("test", test_x, test_y)):
            self.check(split, images, labels, directory)
        return ImageDataset(self.name, train_x, train_y.astype(np.int64), test_x, test_y.astype(np.int64),
                            self.num_classes, self.augment)

    def check(self, split: str, images: np.ndarray, labels: np.ndarray, directory: Path) -> None:
        where = f"{self.name}'s {split} split ({directory})"
        if images.shape[1:] != self.shape or len(images) != len(labels) or not len(images):
            raise UserError(f"{where} has images of shape {images.shape} and {len(labels)} labels, expected "
                            f"N x {'x'.join(map(str, self.shape))} and N labels (N > 0): not {self.name}'s files")
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise UserError(f"{where} has labels from {labels.min()} to {labels.max()}, "
                            f"expected 0 to {self.num_classes - 1}: not {self.name}'s files")


def refetch_hint(source: ImageSource, data_dir: Path) -> str:
    return f"delete it and run `{prepare_command(source.name, data_dir)}`"


# --- download and verify ----------------------------------------------------------------

@contextmanager
def locked(directory: Path) -> Iterator[None]:
    """One process at a time in ``directory`` (the ranks of a torchrun all open the data): an
    exclusive flock on the directory itself, released by the kernel however the process ends."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def verify(source: ImageSource, remote: RemoteFile, data_dir: Path) -> None:
    path = data_dir / source.name / remote.name
    found = md5_of(path)
    if found != remote.md5:
        raise UserError(f"{path} is not the published {source.name} file (MD5 {found}, expected {remote.md5}): "
                        f"{refetch_hint(source, data_dir)}")


def fetch(source: ImageSource, files: list[RemoteFile], data_dir: Path, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Download ``files`` (those still missing once the lock is ours) from the first mirror that has them."""
    directory = data_dir / source.name
    with locked(directory):
        for remote in files:
            path = directory / remote.name
            if path.is_file():  # another process fetched it while we waited
                continue
            failures = []
            for mirror in source.mirrors:
                try:
                    download(mirror + remote.name, path, remote.md5, timeout_s, label=source.name)
                    break
                except UserError as err:
                    failures.append(str(err))
            else:
                names = ", ".join(r.name for r in source.files)
                raise UserError(f"cannot download {source.name} ({failures[0] if failures else 'no mirror'}); "
                                f"fetch {names} from {source.mirrors[0]} and put "
                                f"{'it' if len(source.files) == 1 else 'them'} in {directory}/, or run "
                                f"`{prepare_command(source.name, data_dir)}` on a machine with network")


def download(url: str, path: Path, md5: str, timeout_s: float, label: str) -> None:
    """``url`` to ``path`` through ``path.part``, kept only when its MD5 is ``md5``."""
    response = call_with_deadline(lambda: urllib.request.urlopen(url, timeout=timeout_s), timeout_s + 1, url)
    part = path.with_name(path.name + ".part")
    digest, done = hashlib.md5(usedforsecurity=False), 0
    size = int(response.headers.get("Content-Length") or 0)
    print(f"{label}: downloading {url}" + (f" ({size / 1e6:.1f} MB)" if size else ""), file=sys.stderr, flush=True)
    try:
        with response, open(part, "wb") as out:
            while block := response.read(CHUNK):
                out.write(block)
                digest.update(block)
                done += len(block)
        if digest.hexdigest() != md5:
            raise UserError(f"{url} sent {done:,} bytes whose MD5 is {digest.hexdigest()}, not the published {md5}")
        os.replace(part, path)
    except OSError as err:
        raise UserError(f"{url}: {_one_line(err)} after {done:,} bytes") from None
    finally:
        part.unlink(missing_ok=True)


# --- the formats ------------------------------------------------------------------------------

IDX_UBYTE = 0x08


def read_idx(path: Path, ndim: int, hint: str) -> np.ndarray:
    """A gzip-compressed IDX file of unsigned bytes with ``ndim`` dimensions (MNIST's format:
    two zero bytes, the type code 0x08, the number of dimensions, each dimension as a big-endian
    uint32, then the values)."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise UserError(f"{path} is not a complete gzip file ({_one_line(err)}): {hint}") from None
    header = 4 + 4 * ndim
    if len(data) < header or data[:4] != bytes((0, 0, IDX_UBYTE, ndim)):
        raise UserError(f"{path} is not an IDX file of {ndim}-dimensional unsigned bytes "
                        f"(it starts with {data[:4].hex() or 'nothing'}): {hint}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) - header != math.prod(dims):
        raise UserError(f"{path} holds {len(data) - header:,} values, its header says "
                        f"{'x'.join(map(str, dims))} = {math.prod(dims):,} (a truncated file?): {hint}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()  # writable, for torch


def read_mnist(source: ImageSource, directory: Path) -> Arrays:
    hint = refetch_hint(source, directory.parent)

    def pair(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        images = read_idx(directory / f"{prefix}-images-idx3-ubyte.gz", 3, hint)
        return images[:, None], read_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", 1, hint)

    return (*pair("train"), *pair("t10k"))


class BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR batch (a dict of numpy arrays, lists and strings) and nothing else."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} has no place in a CIFAR batch")
        return super().find_class(module, name)


def read_cifar_batch(data: bytes, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """(images N x 3 x 32 x 32, labels) of one pickled batch: ``data`` is N x 3072 uint8 (the red,
    green and blue planes of each image, row by row), ``label_key`` a list of N ints."""
    # latin1: the batches were pickled by Python 2, whose str holds the arrays' bytes
    batch = BatchUnpickler(io.BytesIO(data), encoding="latin1").load()
    images, labels = batch["data"], np.asarray(batch[label_key])
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3072:
        raise ValueError(f"'data' is {getattr(images, 'shape', type(images).__name__)}, not N x 3072 uint8")
    return images.reshape(-1, 3, 32, 32), labels


def read_cifar(source: ImageSource, directory: Path) -> Arrays:
    """The train and test batches of the tar.gz, read in one pass over the archive."""
    path = directory / source.files[0].name
    hint = refetch_hint(source, directory.parent)
    folder, label_key, splits = CIFAR_LAYOUT[source.name]
    wanted = {f"{folder}/{member}": split for split, members in splits.items() for member in members}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                if member.name in wanted:
                    found[member.name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise UserError(f"{path} is not a complete tar.gz archive ({_one_line(err)}): {hint}") from None
    arrays: dict[str, list] = {"train": [], "test": []}
    for name, split in wanted.items():
        if name not in found:
            raise UserError(f"{path} has no {name}: not the {source.name} python version; {hint}")
        try:
            arrays[split].append(read_cifar_batch(found[name], label_key))
        except Exception as err:  # whatever a damaged pickle raises: one line naming the member
            raise UserError(f"{path}: {name} is not a CIFAR batch ({_one_line(err)}): {hint}") from None
    train, test = ([np.concatenate(parts) for parts in zip(*arrays[split])] for split in ("train", "test"))
    return (*train, *test)


# folder in the archive, label key, split -> members
CIFAR_LAYOUT = {
    "cifar10": ("cifar-10-batches-py", "labels",
                {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}),
    "cifar100": ("cifar-100-python", "fine_labels", {"train": ["train"], "test": ["test"]}),
}

DIGITS_TEST_EVERY = 5
DIGITS_SIZE = 32


def read_digits(source: ImageSource, directory: Path) -> Arrays:
    """scikit-learn's digits.csv.gz (64 pixel counts 0..16 and the label per line), found without
    importing scikit-learn, upsampled to 32x32 and scaled to 0..255."""
    import torch

    spec = importlib.util.find_spec("sklearn")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets/data/digits.csv.gz" if spec else None
    if path is None or not path.is_file():
        raise UserError("--dataset digits reads scikit-learn's bundled copy of the UCI handwritten digits, and "
                        "scikit-learn is not installed: make venv EXTRAS=digits (or pip install -e '.[digits]')")
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    small = torch.from_numpy(table[:, :64]).reshape(-1, 1, 8, 8) / 16
    large = torch.nn.functional.interpolate(small, size=DIGITS_SIZE, mode="bilinear", align_corners=False)
    images = (large * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    labels = table[:, 64].astype(np.int64)
    test = np.arange(len(table)) % DIGITS_TEST_EVERY == 0
    return images[~test], labels[~test], images[test], labels[test]


MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
CIFAR_MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)

SOURCES: dict[str, ImageSource] = {
    "mnist": ImageSource(
        "mnist", "MNIST handwritten digits, 60,000 train / 10,000 test, 1x28x28, 10 classes (IDX files, 11 MB)",
        (1, 28, 28), 10, (RemoteFile("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
                          RemoteFile("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
                          RemoteFile("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
                          RemoteFile("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c")),
        MNIST_MIRRORS, read_mnist),
    "cifar10": ImageSource(
        "cifar10", "CIFAR-10, 50,000 train / 10,000 test, 3x32x32, 10 classes (python pickles, 163 MB)",
        (3, 32, 32), 10, (RemoteFile("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),),
        CIFAR_MIRRORS, read_cifar, augment=True),
    "cifar100": ImageSource(
        "cifar100", "CIFAR-100, 50,000 train / 10,000 test, 3x32x32, 100 classes (python pickles, 161 MB)",
        (3, 32, 32), 100, (RemoteFile("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),),
        CIFAR_MIRRORS, read_cifar, augment=True),
    "digits": ImageSource(
        "digits", "UCI handwritten digits bundled with scikit-learn, 1,437 train / 360 test, 8x8 upsampled "
        "to 1x32x32, 10 classes (offline)", (1, DIGITS_SIZE, DIGITS_SIZE), 10, (), (), read_digits),
}


def open_dataset(name: str, data_dir: str | Path | None = None, download: bool = True,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> ImageDataset:
    if name not in SOURCES:
        raise UserError(f"unknown image dataset {name!r}; choose one of: {', '.join(SOURCES)}")
    return SOURCES[name].open(data_dir, download=download, timeout_s=timeout_s)
