import pytest
import torch

from slopestudy import data
from slopestudy.config import DataConfig

from .conftest import REAL_DATA, write_tiny_mnist


def test_tiny_idx_loads_through_torchvision(tiny_root):
    t = data.load(DataConfig(root=str(tiny_root), verify_md5=False, fetch=False), torch.device("cpu"))
    assert t.x_train.shape == (256, 784) and t.x_test.shape == (128, 784)
    assert t.x_train.dtype == torch.float32 and t.y_train.dtype == torch.int64
    assert set(t.y_train.tolist()) <= set(range(10))
    raw = (t.x_train * data.NORMALIZE["mnist"][1] + data.NORMALIZE["mnist"][0]) * 255
    assert raw.max().item() == pytest.approx(255, abs=1e-3)  # normalization is invertible


def test_subset_sizes_and_too_large(tiny_root):
    cfg = DataConfig(root=str(tiny_root), verify_md5=False, fetch=False, train_size=100, test_size=10)
    t = data.load(cfg, torch.device("cpu"))
    assert len(t.x_train) == 100 and len(t.y_test) == 10
    cfg.train_size = 10_000
    with pytest.raises(data.DataError, match="train_size=10000 is larger"):
        data.load(cfg, torch.device("cpu"))


def test_md5_mismatch_names_the_file(tmp_path):
    write_tiny_mnist(tmp_path)
    with pytest.raises(data.DataError, match=r"train-images-idx3-ubyte fails its MD5 check"):
        data.verify(tmp_path)


def test_missing_files_give_clear_error(tmp_path):
    cfg = DataConfig(root=str(tmp_path), fetch=False, verify_md5=False)
    with pytest.raises(data.DataError, match="MNIST/raw"):
        data.load(cfg, torch.device("cpu"))


@pytest.mark.skipif(not (REAL_DATA / "MNIST" / "raw").exists(), reason="real MNIST not fetched")
def test_real_mnist_files_verify():
    data.verify(REAL_DATA)
    t = data.load(DataConfig(root=str(REAL_DATA), fetch=False), torch.device("cpu"))
    assert t.x_train.shape == (60000, 784) and t.x_test.shape == (10000, 784)
    assert abs(t.x_train.mean().item()) < 0.01 and abs(t.x_train.std().item() - 1) < 0.01
