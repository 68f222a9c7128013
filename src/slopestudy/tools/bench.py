"""Side-by-side speed benchmark of the training step, in one process, on one model and data
(whole sweeps, peak memory and the report: bench_system.py).

    python -m slopestudy.tools.bench                 # full: writes results/bench.md
    python -m slopestudy.tools.bench --quick         # seconds: checks the code path only (CI)
    python -m slopestudy.tools.bench --fixes         # what each fix of conf/fix/ costs per step:
                                               # writes results/bench_fixes.csv (section 8)
                                               # and every round's numbers, bench_fixes_rounds.csv
    python -m slopestudy.tools.bench --kernel        # the kernel probe's cost against a training step,
                                               # and the default init's denormal slowdown at depth:
                                               # writes results/bench_kernel.csv (section 9)

Measures samples/s of (a) the matmul limit: the same matmuls a forward+backward does, with no
autograd; (b) a bare training loop over in-memory tensors; (c) this project's instrumented
training epoch (probes, TensorBoard logging at the default rates); (d) the pytorch/examples
pipeline: torchvision transforms + DataLoader. Rounds are interleaved and the median is kept,
so a noisy neighbour hurts every variant alike. Prints and records the ratios.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from slopestudy.config import N_IN, DataConfig, Device, StudyConfig, config_from_record, layer_sizes
from slopestudy.paths import REPO
from slopestudy.run import data as data_mod
from slopestudy.run.model import build_mlp
from slopestudy.run.trainer import Run
from slopestudy.tools.bench_system import fmt_ratio, peak_rss_mb, sweep_throughput, write_report

DEVICE = torch.device("cpu")  # --device cuda measures the GPU path (data and model on the GPU)


def gpu_name() -> str:
    return f"GPU {torch.cuda.get_device_name(DEVICE)} (data, model on it), " if DEVICE.type == "cuda" else ""


def sync() -> None:
    """Wait for queued GPU work, so a timer measures the work and not only its launch."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def get_data(n: int, root: str) -> tuple[data_mod.Tensors, str]:
    """Real MNIST when it is there, else random tensors of the same shape (speed is the same)."""
    try:
        cfg = DataConfig(root=root, fetch=False, train_size=n, test_size=1000)
        return data_mod.load(cfg, DEVICE), "MNIST"
    except data_mod.DataError:
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(n, N_IN, generator=g), torch.randint(0, 10, (n,), generator=g)
        x, y = x.to(DEVICE), y.to(DEVICE)
        return data_mod.Tensors(x, y, x[:1000], y[:1000], x[:1000], y[:1000]), "synthetic (MNIST not found)"


def matmul_limit(depth: int, width: int, batch: int, n: int) -> float:
    """samples/s of only the GEMMs of forward + backward (3 per layer), preallocated."""
    sizes = layer_sizes(depth, width)
    ws = [torch.randn(sizes[i + 1], sizes[i], device=DEVICE) for i in range(depth)]
    acts = [torch.randn(batch, s, device=DEVICE) for s in sizes]
    grads = [torch.randn(batch, s, device=DEVICE) for s in sizes]
    wgrads = [torch.empty_like(w) for w in ws]
    steps = n // batch
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        for i, w in enumerate(ws):
            torch.mm(acts[i], w.t(), out=acts[i + 1])  # forward
        for i in reversed(range(depth)):
            torch.mm(grads[i + 1].t(), acts[i], out=wgrads[i])  # dL/dW_i
            if i:
                torch.mm(grads[i + 1], ws[i], out=grads[i])  # dL/dx_i
    sync()
    return steps * batch / (time.perf_counter() - t0)


def bare_loop(cfg: StudyConfig, d: data_mod.Tensors) -> float:
    """The plainest correct loop: in-memory tensors, no probes, no logging."""
    torch.manual_seed(0)
    model = build_mlp(cfg).to(DEVICE)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    n = len(d.x_train)
    sync()
    t0 = time.perf_counter()
    perm = torch.randperm(n).to(DEVICE)
    for i in range(0, n, cfg.batch_size):
        idx = perm[i : i + cfg.batch_size]
        loss = F.cross_entropy(model(d.x_train[idx]), d.y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync()
    return n / (time.perf_counter() - t0)


def instrumented(cfg: StudyConfig, d: data_mod.Tensors, out_dir: Path) -> float:
    """This project's training epoch (Run.train_epoch) at the config's logging rates."""
    run = Run(cfg, out_dir, data=d)
    run.open_logger()
    sync()
    t0 = time.perf_counter()
    run.train_epoch()  # ends with a host sync of its own (the epoch's mean loss)
    seconds = time.perf_counter() - t0
    run.logger.close()
    return len(d.x_train) / seconds


def dataloader_baseline(cfg: StudyConfig, root: str, n: int) -> float | None:
    """pytorch/examples style: ToTensor + Normalize per sample, DataLoader batches."""
    import torchvision
    from torchvision import transforms

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    try:
        ds = torchvision.datasets.MNIST(root, train=True, download=False, transform=tf)
    except RuntimeError:
        return None
    ds = torch.utils.data.Subset(ds, range(n))
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, shuffle=True)
    torch.manual_seed(0)
    model = build_mlp(cfg).to(DEVICE)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    t0 = time.perf_counter()
    for xb, yb in loader:
        xb, yb = xb.to(DEVICE), yb.to(DEVICE)  # what pytorch/examples does per batch
        loss = F.cross_entropy(model(xb.flatten(1)), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync()
    return n / (time.perf_counter() - t0)


def measure(depth: int, rounds: int, n: int, root: str, with_loader: bool) -> dict:
    cfg = StudyConfig(depth=depth, device=Device(DEVICE.type))
    d, source = get_data(n, root)
    results: dict[str, list[float]] = {"matmul": [], "bare": [], "instrumented": [], "dataloader": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds + 1):  # round 0 warms up caches and the allocator
            got = {
                "matmul": matmul_limit(depth, cfg.width, cfg.batch_size, n),
                "bare": bare_loop(cfg, d),
                "instrumented": instrumented(cfg, d, Path(tmp) / f"r{r}"),
            }
            if with_loader:
                got["dataloader"] = dataloader_baseline(cfg, root, n)
            if r:
                for k, v in got.items():
                    if v is not None:
                        results[k].append(v)
    med = {k: statistics.median(v) for k, v in results.items() if v}
    # Ratios are medians of per-round ratios: both sides of a pair ran back to back, so a
    # slow spell of the shared machine hits them alike.
    pairs = {"instr/bare": ("instrumented", "bare"), "bare/matmul": ("bare", "matmul"),
             "instr/loader": ("instrumented", "dataloader")}  # fmt: skip
    ratios = {
        name: statistics.median(a / b for a, b in zip(results[num], results[den], strict=True))
        for name, (num, den) in pairs.items()
        if results[num] and results[den]
    }
    return {"depth": depth, "source": source, "n": n, **med, "ratios": ratios}


FIX_REFERENCE = "leaky_he"  # the plain net (LeakyReLU, He init): every fix's cost is relative to it


def fix_configs(depth: int) -> dict[str, StudyConfig]:
    """Every preset of conf/fix/ as the StudyConfig it composes to, at this depth."""
    import yaml

    at = {"depth": depth, "device": DEVICE.type}
    return {
        path.stem: config_from_record({**yaml.safe_load(path.read_text()), **at})
        for path in sorted((REPO / "conf" / "fix").glob("*.yaml"))
    }


def fixes_cost(depths: list[int], rounds: int, n: int, root: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ms per training step (forward, backward, SGD-momentum step; no probes, which cost every fix
    alike) of each fix at each depth, and its ratio to the plain net's. Within a round every fix
    runs back to back (in an order rotated from round to round), so the per-round ratio compares
    like with like on a shared machine. Returns the medians over rounds (with the ratios'
    quartiles) and every round's numbers, so a reader can test a cost claim on the rounds."""
    d, source = get_data(n, root)
    rows, per_round = [], []
    for depth in depths:
        cfgs = fix_configs(depth)
        ms: dict[str, list[float]] = {name: [] for name in cfgs}
        names = list(cfgs)
        for r in range(rounds + 1):  # round 0 warms up
            # each round starts one fix later, so no fix always runs first (or right after another)
            for name in names[r % len(names) :] + names[: r % len(names)]:
                cfg = cfgs[name]
                per_step = 1000 * cfg.batch_size / bare_loop(cfg, d)
                if r:
                    ms[name].append(per_step)
        ref = ms[FIX_REFERENCE]
        for name, values in ms.items():
            ratios = [a / b for a, b in zip(values, ref, strict=True)]
            per_round += [{"fix": name, "depth": depth, "round": r, "ms_per_step": round(v, 3),
                           f"ratio_to_{FIX_REFERENCE}": round(x, 4)}
                          for r, (v, x) in enumerate(zip(values, ratios, strict=True), start=1)]  # fmt: skip
            ratio = statistics.median(ratios)
            q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratio,) * 3
            rows.append({"fix": name, "depth": depth, "ms_per_step": round(statistics.median(values), 3),
                         f"ratio_to_{FIX_REFERENCE}": round(ratio, 3), "ratio_q1": round(q1, 3),
                         "ratio_q3": round(q3, 3), "rounds": rounds, "samples": n,
                         "threads": torch.get_num_threads(), "data": source})  # fmt: skip
            print(f"depth {depth:>3} {name:<16} {statistics.median(values):7.2f} ms/step  "
                  f"x{ratio:.2f} of {FIX_REFERENCE}", flush=True)  # fmt: skip
    return pd.DataFrame(rows), pd.DataFrame(per_round)


def kernel_cost(depths: list[int], rounds: int, n: int, root: str) -> pd.DataFrame:
    """Per depth, interleaved rounds, medians: ms of one instrumented training step (probes armed,
    as on a log step), of one kernel probe (all pairs of 128 probe examples, once per epoch), and
    of a bare step of the default-init net against the He net of the same shape (the default
    init's signal shrinks into float32 denormals past depth ~90, which are slow on CPUs)."""
    from slopestudy.run.probes import kernel_profile

    d, source = get_data(n, root)
    rows = []
    for depth in depths:
        he = StudyConfig(depth=depth, slope=0.0, init="kaiming")
        default = StudyConfig(depth=depth, slope=0.0, init="pytorch")
        times: dict[str, list[float]] = {"step": [], "probe": [], "bare_he": [], "bare_default": []}
        with tempfile.TemporaryDirectory() as tmp:
            run = Run(he, tmp, data=d)
            xb, yb = d.x_train[: he.batch_size], d.y_train[: he.batch_size]
            x_kernel = d.x_train[:128]
            for r in range(rounds + 1):  # round 0 warms up
                t0 = time.perf_counter()
                for _ in range(5):
                    run.forward_backward(xb, yb, measure=True)
                    run.optimizer.step()
                t1 = time.perf_counter()
                kernel_profile(run.model, x_kernel).tolist()
                t2 = time.perf_counter()
                bare = {name: 1000 * cfg.batch_size / bare_loop(cfg, d) for name, cfg in
                        (("bare_he", he), ("bare_default", default))}  # fmt: skip
                if r:
                    times["step"].append(1000 * (t1 - t0) / 5)
                    times["probe"].append(1000 * (t2 - t1))
                    for name, ms in bare.items():
                        times[name].append(ms)
        probe_ratio = statistics.median([p / s for p, s in zip(times["probe"], times["step"], strict=True)])
        denormal = statistics.median(
            [a / b for a, b in zip(times["bare_default"], times["bare_he"], strict=True)]
        )
        med = {k: statistics.median(v) for k, v in times.items()}
        steps = math.ceil(50_000 / he.batch_size)
        rows.append({"depth": depth, "ms_instrumented_step": round(med["step"], 2),
                     "ms_kernel_probe": round(med["probe"], 2), "probe_per_step": round(probe_ratio, 3),
                     "probe_per_epoch": round(med["probe"] / (steps * med["bare_he"]), 5),
                     "ms_bare_step_he": round(med["bare_he"], 2),
                     "ms_bare_step_default": round(med["bare_default"], 2),
                     "default_over_he": round(denormal, 2), "rounds": rounds, "samples": n,
                     "threads": torch.get_num_threads(), "data": source})  # fmt: skip
        print(f"depth {depth:>3}: kernel probe {med['probe']:.1f} ms = x{probe_ratio:.2f} of one "
              f"instrumented step ({med['step']:.1f} ms), once per {steps}-step epoch; "
              f"default-init bare step x{denormal:.2f} of the He net's", flush=True)  # fmt: skip
    return pd.DataFrame(rows)


def thread_scaling(d: data_mod.Tensors, rounds: int) -> float:
    """Upper bound of the parallel speed-up on this machine: 2 one-thread jobs vs one 2-thread job,
    from the bare loop's samples/s at 1 and at 2 threads (depth 10), interleaved, median."""
    cfg, ratios = StudyConfig(), []
    threads = torch.get_num_threads()
    try:
        for _ in range(rounds):
            torch.set_num_threads(1)
            one = bare_loop(cfg, d)
            torch.set_num_threads(threads)
            ratios.append(threads * one / bare_loop(cfg, d))
    finally:
        torch.set_num_threads(threads)
    return statistics.median(ratios)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m slopestudy.tools.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes: check the code path in seconds")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median kept)")
    p.add_argument("--samples", type=int, default=20_000, help="training samples per measurement")
    p.add_argument("--root", default="data", help="MNIST root")
    p.add_argument(
        "--depths",
        default="10,5,20,50",
        help="depths (the first, with the DataLoader baseline, is the default study config's)",
    )
    p.add_argument(
        "--system", action="store_true", help="also: 12-run sweep sequential vs parallel, peak RSS"
    )
    p.add_argument("--out", default=str(REPO / "results" / "bench.md"), help="Markdown report ('' = none)")
    p.add_argument(
        "--fixes",
        action="store_true",
        help="only the cost per step of each conf/fix/ preset (--depths 10,30,50 unless given)",
    )
    p.add_argument(
        "--kernel",
        action="store_true",
        help="only the kernel probe's cost and the default init's denormal slowdown (--depths 100,200)",
    )
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where data and model live")
    args = p.parse_args(argv)
    global DEVICE
    DEVICE = torch.device(args.device)
    if args.kernel:
        if args.quick:
            args.rounds, args.samples, args.depths = 1, 512, "3"
        elif args.depths == p.get_default("depths"):
            args.depths = "100,200"
        out = Path(args.out if args.out != p.get_default("out") else REPO / "results" / "bench_kernel.csv")
        table = kernel_cost([int(x) for x in args.depths.split(",")], args.rounds, args.samples, args.root)
        if args.out and not args.quick:
            table.to_csv(out, index=False)
            print(f"wrote {out}")
        return 0
    if args.fixes:
        if args.quick:
            args.rounds, args.samples, args.depths = 1, 512, "3"
        elif args.depths == p.get_default("depths"):
            args.depths = "10,30,50"
        out = Path(args.out if args.out != p.get_default("out") else REPO / "results" / "bench_fixes.csv")
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}")
        table, rounds = fixes_cost(
            [int(x) for x in args.depths.split(",")], args.rounds, args.samples, args.root
        )
        if args.out and not args.quick:
            table.to_csv(out, index=False)
            rounds.to_csv(out.with_name(f"{out.stem}_rounds.csv"), index=False)
            print(f"wrote {out} and its rounds, {out.stem}_rounds.csv")
        return 0
    if args.quick:
        args.rounds, args.samples, args.depths, args.out = 1, 1024, "3,5", ""
    depths = [int(x) for x in args.depths.split(",")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}")
    rows = []
    for depth in depths:
        m = measure(depth, args.rounds, args.samples, args.root, with_loader=(depth == depths[0]))
        rows.append(m)
        print(
            f"depth {depth:>3}: matmul {m['matmul']:>8.0f}  bare {m['bare']:>8.0f}  instrumented "
            f"{m['instrumented']:>8.0f}  dataloader {m.get('dataloader', 0):>8.0f} samples/s | "
            f"instr/bare {fmt_ratio(m, 'instr/bare')}  "
            f"bare/matmul {fmt_ratio(m, 'bare/matmul')}  "
            f"instr/loader {fmt_ratio(m, 'instr/loader')}",
            flush=True,
        )
    system = None
    if args.system:
        sweeps = sweep_throughput(args.root, [])
        rss = peak_rss_mb(args.root)
        speedup = sweeps["parallel"]["runs_per_min"] / sweeps["sequential"]["runs_per_min"]
        print(f"parallel / sequential: {speedup:.2f} | peak RSS of one full-MNIST depth-20 run: {rss:.0f} MB")
        bound = thread_scaling(get_data(args.samples, args.root)[0], args.rounds)
        print(f"upper bound from thread scaling ({torch.get_num_threads()} x 1-thread vs 1 x "
              f"{torch.get_num_threads()}-thread bare loop): {bound:.2f}")  # fmt: skip
        system = {"sweeps": sweeps, "rss_mb": rss, "bound": bound}
    if args.out:
        write_report(Path(args.out), rows, argv if argv is not None else sys.argv[1:], system, gpu_name())
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
