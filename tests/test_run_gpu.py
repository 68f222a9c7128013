"""The CUDA path, run where a GPU is (`pytest -m gpu`; scripts/gpu_check.sh on a lent GPU).

Skipped without CUDA. What holds on a GPU: probe values equal autograd's (to float32
tolerance: cuBLAS may sum in another order than the reference); a resumed run matches an
uninterrupted one to 1e-4 relative (GPU kernels need not be bit-identical between processes);
non-log steps make no host sync, so divergence is seen at log steps and epoch ends only."""

import math
import signal

import pytest
import torch
from torch import nn

from slopestudy.config import Device, Init, StudyConfig
from slopestudy.run.probes import GradientProbe
from slopestudy.run.trainer import Run

from .helpers.children import start_paused, train
from .helpers.nets import autograd_reference, mlp
from .helpers.runs import load

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
CUDA = torch.device("cuda")


@pytest.mark.parametrize("inplace", [False, True])
def test_probe_matches_autograd_on_the_gpu(inplace):
    torch.manual_seed(0)
    model = mlp(depth=6, width=64, slope=0.1, inplace=inplace, init=Init("kaiming")).to(CUDA)
    x, y = torch.randn(32, 784, device=CUDA), torch.randint(0, 10, (32,), device=CUDA)
    probe = GradientProbe(model)
    probe.armed = True
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    measured = probe.read()
    assert measured.device.type == "cuda"
    ref_w, ref_z = autograd_reference(model, x, y)
    torch.testing.assert_close(measured[0], ref_w, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(measured[1], ref_z, rtol=1e-4, atol=1e-7)


def test_resumed_gpu_run_matches_an_uninterrupted_one(tiny_root, tmp_path):
    args = ["depth=3", "epochs=4", "log_every=2", "seed=3", "device=cuda"]
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    assert train(tiny_root, *args, f"hydra.run.dir={ref_dir}").returncode == 0
    child = start_paused(tiny_root, *args, f"hydra.run.dir={run_dir}", epoch=2)
    child.send_signal(signal.SIGKILL)
    child.finish()
    resumed = train(tiny_root, *args, f"hydra.run.dir={run_dir}")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    a, b = load(run_dir / "run.json"), load(ref_dir / "run.json")
    assert a["device"] == "cuda" and a["resumed_at_step"]
    for key in ("val_acc", "test_acc", "train_loss", "test_loss"):
        assert a["final"][key] == pytest.approx(b["final"][key], rel=1e-4), key


def test_no_host_sync_between_log_steps_and_divergence_still_caught(tiny_root):
    from slopestudy.config import DataConfig
    from slopestudy.run import data as data_mod

    cfg = StudyConfig(depth=4, width=64, batch_size=32, lr=1e6, log_every=1000, epochs=1,
                      device=Device.cuda, data=DataConfig(root=str(tiny_root), fetch=False,
                                                          verify_md5=False, val_size=64))  # fmt: skip
    d = data_mod.load(cfg.data, CUDA)
    run = Run(cfg, tiny_root / "sync_probe", data=d)
    run.open_logger()
    batches = list(run.batches())[:4]  # the permutation's host->device copy syncs: done before
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any synchronizing op in the steps raises
    try:
        for xb, yb in batches:
            loss, norms = run.forward_backward(xb, yb, measure=False)
            run.optimizer.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    run.logger.close()
    assert norms is None and not math.isfinite(loss.item())  # diverged, seen at the next read
