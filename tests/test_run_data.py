import pytest
import torch

from slopestudy.config import DataConfig
from slopestudy.run import data

from .helpers import REAL_DATA
from .helpers.data import write_tiny_mnist


def tiny(root, **kw) -> DataConfig:
    return DataConfig(root=str(root), verify_md5=False, fetch=False, **{"val_size": 64, **kw})


def test_tiny_idx_loads_through_torchvision(tiny_root):
    t = data.load(tiny(tiny_root), torch.device("cpu"))
    assert t.x_train.shape == (192, 784) and t.x_val.shape == (64, 784) and t.x_test.shape == (128, 784)
    assert t.x_train.dtype == torch.float32 and t.y_train.dtype == torch.int64
    assert set(t.y_train.tolist()) <= set(range(10))
    raw = (t.x_train * data.NORMALIZE["mnist"][1] + data.NORMALIZE["mnist"][0]) * 255
    assert raw.max().item() == pytest.approx(255, abs=1e-3)  # normalization is invertible


def test_subset_sizes_and_too_large(tiny_root):
    cfg = tiny(tiny_root, train_size=100, test_size=10)
    t = data.load(cfg, torch.device("cpu"))
    assert len(t.x_train) == 100 and len(t.y_test) == 10
    cfg.train_size = 10_000
    with pytest.raises(data.DataError, match="train_size=10000 is larger"):
        data.load(cfg, torch.device("cpu"))


def test_validation_split_is_fixed_disjoint_and_never_trained_on(tiny_root):
    train_idx, val_idx = data.split_indices(256, 64)
    assert len(val_idx) == 64 and len(train_idx) == 192
    assert not set(train_idx.tolist()) & set(val_idx.tolist())  # disjoint
    assert sorted(train_idx.tolist() + val_idx.tolist()) == list(range(256))  # nothing lost
    # Fixed: the same examples whatever the global RNG (a run's seed) is.
    torch.manual_seed(123)
    assert torch.equal(data.split_indices(256, 64)[1], val_idx)
    # And through the loader: the validation rows are exactly the held-out file rows.
    data._load_cached.cache_clear()
    t = data.load(tiny(tiny_root), torch.device("cpu"))
    everything = data.load(tiny(tiny_root, val_size=0), torch.device("cpu"))
    assert torch.equal(t.x_val, everything.x_train[val_idx])
    assert torch.equal(t.x_train, everything.x_train[train_idx])
    assert len(everything.x_val) == 0
    with pytest.raises(data.DataError, match="val_size=256 leaves no training examples"):
        data.load(tiny(tiny_root, val_size=256), torch.device("cpu"))


def test_md5_mismatch_names_the_file(tmp_path):
    write_tiny_mnist(tmp_path)
    with pytest.raises(data.DataError, match=r"train-images-idx3-ubyte fails its MD5 check"):
        data.verify(tmp_path)


def test_missing_files_give_clear_error(tmp_path):
    cfg = tiny(tmp_path)
    with pytest.raises(data.DataError, match="MNIST/raw"):
        data.load(cfg, torch.device("cpu"))


@pytest.mark.skipif(not (REAL_DATA / "MNIST" / "raw").exists(), reason="real MNIST not fetched")
def test_real_mnist_files_verify():
    data.verify(REAL_DATA)
    t = data.load(DataConfig(root=str(REAL_DATA), fetch=False), torch.device("cpu"))
    assert t.x_train.shape == (50000, 784) and t.x_val.shape == (10000, 784)
    assert t.x_test.shape == (10000, 784)
    assert abs(t.x_train.mean().item()) < 0.01 and abs(t.x_train.std().item() - 1) < 0.01


def test_gzipped_raw_files_are_unpacked_before_loading(tmp_path):
    import gzip

    write_tiny_mnist(tmp_path)
    raw = data.raw_dir(tmp_path)
    for f in data.RAW_FILES:  # only the .gz files are there, as they travel to a GPU machine
        (raw / (f + ".gz")).write_bytes(gzip.compress((raw / f).read_bytes()))
        (raw / f).unlink()
    t = data.load(
        DataConfig(root=str(tmp_path), verify_md5=False, fetch=True, val_size=64), torch.device("cpu")
    )
    assert t.x_train.shape == (192, 784) and all((raw / f).exists() for f in data.RAW_FILES)
