"""What the machine can do, checked with a config's values before any work: the device a run
uses and the peak memory it needs (tests/test_run_resources.py holds the estimate against measured
peak RSS)."""

from __future__ import annotations

import os

from slopestudy.config import (
    DATASET_SIZES,
    N_IN,
    Act,
    ConfigError,
    Device,
    PreluParams,
    StudyConfig,
    layer_sizes,
)


def pick_device(choice: Device):
    """The torch.device a run will use; device=cuda without a GPU is a config error."""
    import torch  # here, not at the top: composing a config must not need torch

    if choice is Device.cuda and not torch.cuda.is_available():
        raise ConfigError("invalid config: device='cuda' but no CUDA GPU is visible; allowed: auto, cpu")
    if choice is Device.cpu or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


# What a run's process holds besides the parts below (torch, torchvision, tensorboard, hydra,
# their allocators): measured peak RSS minus the parts, on the 2-core CPU machine (~600 MiB).
# Counted only on the CPU, where it shares the RAM.
PROCESS_BASE_BYTES = 600 * 2**20
EVAL_CHUNK = 10_000  # examples per forward pass when evaluating (measures.evaluate)


def estimate_bytes(cfg: StudyConfig, on_cpu: bool = True) -> dict[str, int]:
    """Peak memory of a run, by part (float32). tests/test_run_resources.py holds it against the
    measured peak RSS of real runs."""
    w, depth = cfg.width, cfg.depth
    sizes = layer_sizes(depth, w)
    params = sum(a * b + b for a, b in zip(sizes, sizes[1:], strict=False))
    state = {"sgd": 1 if cfg.momentum > 0 else 0, "adam": 2}[cfg.optimizer.value]
    units = sum(sizes[1:])  # outputs of every layer
    full_train, full_test = DATASET_SIZES[cfg.data.name]
    if cfg.act is Act.prelu:
        params += (depth - 1) * (w if cfg.prelu_params is PreluParams.unit else 1)
    parts = {
        "parameters": 4 * params,
        "gradients": 4 * params,
        "optimizer state": 4 * params * state,
        # autograd keeps z and LeakyReLU(z) of every layer (z only with inplace), and backward
        # holds a gradient of the same size as it goes
        "batch activations": 4 * cfg.batch_size * units * (2 if cfg.inplace else 3),
        # no grad: two layer outputs alive at a time
        "evaluation chunk": 4 * min(EVAL_CHUNK, full_train) * max(sizes[1:]) * 2,
        # uint8 files as torchvision holds them + float32 train/val/test tensors
        "data": (full_train + full_test) * N_IN * (1 + 4),
    }
    if on_cpu:
        parts["process (torch, libraries)"] = PROCESS_BASE_BYTES
    return parts


def available_bytes(device) -> int:
    """What the device can give a run: free GPU memory, or the OS's MemAvailable on the CPU."""
    if device.type == "cuda":
        import torch

        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits(cfg: StudyConfig, device) -> None:
    parts = estimate_bytes(cfg, on_cpu=device.type == "cpu")
    need, have = sum(parts.values()), available_bytes(device)
    if need > have:
        biggest = max(parts, key=parts.get)
        raise ConfigError(
            f"invalid config: width={cfg.width}, depth={cfg.depth}, batch_size={cfg.batch_size} needs "
            f"about {_gib(need)} ({biggest} {_gib(parts[biggest])}) but {device.type} has {_gib(have)} "
            "available; allowed: a smaller width, depth or batch_size"
        )


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**28 else f"{n / 2**20:.0f} MiB"


def set_threads(threads: int) -> int:
    """Set torch's CPU threads and return them; 0 = the launcher's share of the cores."""
    import torch  # here, not at the top: composing a config must not need torch

    # Parallel launchers run several jobs per machine; each must use only its share of the
    # cores or they oversubscribe (10-25x slower). joblib's loky sets OMP_NUM_THREADS in its
    # workers; SLURM tells a task its cores in SLURM_CPUS_PER_TASK.
    for var in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK"):
        if threads == 0 and os.environ.get(var, "").isdigit():
            threads = int(os.environ[var])
    if threads > 0:
        torch.set_num_threads(threads)
    return torch.get_num_threads()
