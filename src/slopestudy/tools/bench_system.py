"""The system half of the benchmark (`python -m slopestudy.tools.bench --system`): whole sweeps and whole
runs, each in a child process (a sweep's wall time with the basic and the parallel launcher, one
run's peak memory), and the Markdown report of everything bench.py measured (results/bench.md)."""

from __future__ import annotations

import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from slopestudy.paths import REPO

# 12 runs on full MNIST. Deepest (longest) first, so the parallel workers finish together
# instead of one running the last long job alone.
SWEEP = ["slope=0,0.01,0.2", "depth=20,10,5,3", "epochs=1"]


def sweep_throughput(root: str, extra: list[str]) -> dict:
    """Wall time of the same 12-run sweep with the basic launcher and with hydra/launcher=parallel."""
    out = {}
    for name, launcher in (("sequential", []), ("parallel", ["hydra/launcher=parallel"])):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, str(REPO / "train.py"), "-m", *SWEEP, *launcher, *extra,
                   f"data.root={root}", f"hydra.sweep.dir={tmp}"]  # fmt: skip
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
            seconds = time.perf_counter() - t0
            if proc.returncode != 0:
                raise RuntimeError(f"{name} sweep failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
            n_runs = len(list(Path(tmp).rglob("run.json")))
        out[name] = {"seconds": seconds, "runs": n_runs, "runs_per_min": 60 * n_runs / seconds}
        print(f"{name:>10} sweep: {n_runs} runs in {seconds:.1f}s = {out[name]['runs_per_min']:.1f} runs/min")
    return out


def peak_rss_mb(root: str, depth: int = 20) -> float:
    """Peak resident memory of one full-MNIST training run (a child process of its own)."""
    code = (
        "import resource, subprocess, sys; "
        f"subprocess.run([sys.executable, {str(REPO / 'train.py')!r}, 'epochs=1', 'depth={depth}', "
        f"'data.root={root}', 'hydra.run.dir=' + sys.argv[1]], check=True, capture_output=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-c", code, tmp], capture_output=True, text=True, check=True)
    return int(proc.stdout.strip()) / 1024  # ru_maxrss is in KiB on Linux


def fmt_ratio(m: dict, name: str) -> str:
    return f"{m['ratios'][name]:.2f}" if name in m["ratios"] else "n/a"


def write_report(
    path: Path, rows: list[dict], argv: list[str], system: dict | None, device: str = ""
) -> None:
    """`device`: what bench.gpu_name says about the GPU the rows were measured on ('' on the CPU)."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    lines = [
        "## Training-step benchmark",
        "",
        f"Command: `python -m slopestudy.tools.bench{''.join(' ' + a for a in argv)}`",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"{device}commit {commit.stdout.strip() or '?'}; data: {rows[0]['source']}, "
        f"{rows[0]['n']} samples per measurement, "
        "median of interleaved rounds. Default study config: width 256, batch 128, SGD, log_every 50, "
        "hist_every 500.",
        "",
        "| depth | matmul limit | bare loop | instrumented | DataLoader+transforms | instrumented / bare "
        "| bare / matmul | instrumented / DataLoader |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in rows:
        loader = m.get("dataloader")
        lines.append(
            f"| {m['depth']} | {m['matmul']:.0f} | {m['bare']:.0f} | {m['instrumented']:.0f} | "
            f"{f'{loader:.0f}' if loader else '–'} | {fmt_ratio(m, 'instr/bare')} | "
            f"{fmt_ratio(m, 'bare/matmul')} | {fmt_ratio(m, 'instr/loader')} |"
        )
    lines += [
        "",
        "Throughputs are samples/s on this machine (noisy and shared); the ratios are the result.",
        "",
    ]
    main_row = rows[0]
    checks = [
        (f"instrumented >= 0.90 x bare loop (depth {main_row['depth']})", "instr/bare", 0.90),
        (f"instrumented >= 2.5 x DataLoader baseline (depth {main_row['depth']})", "instr/loader", 2.5),
        (f"bare loop >= 0.6 x matmul limit (depth {main_row['depth']})", "bare/matmul", 0.6),
    ]
    lines += ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for text, name, target in checks:
        value = main_row["ratios"].get(name)
        met = "yes" if value is not None and value >= target else "NO"
        lines.append(f"| {text} | {fmt_ratio(main_row, name)} | {met} |")
    flat = [f"{m['depth']}: {fmt_ratio(m, 'instr/bare')}" for m in rows]
    lines += ["", f"Probe cost against depth (instrumented / bare): {', '.join(flat)}.", ""]
    if system:
        lines += system_lines(system)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def system_lines(system: dict) -> list[str]:
    """The report's targets and table for the whole-system measurements (--system)."""
    seq, par = system["sweeps"]["sequential"], system["sweeps"]["parallel"]
    speedup = par["runs_per_min"] / seq["runs_per_min"]
    lines = [
        f"Target parallel >= 1.2 x sequential runs/min: measured {speedup:.2f}, "
        f"{'met' if speedup >= 1.2 else 'NOT met'}. Upper bound on this machine, from the bare loop at "
        f"1 thread vs {torch.get_num_threads()} threads (depth 10): {system['bound']:.2f}; the rest of "
        "the gap is what a parallel sweep pays per worker and per job (a fresh interpreter importing "
        "torch per worker, data loading, test evaluation, logging) on top of the sequential sweep's "
        "costs, and a tail where one worker runs the last job alone.",
        f"Target peak RSS < 1500 MB: measured {system['rss_mb']:.0f} MB, "
        f"{'met' if system['rss_mb'] < 1500 else 'NOT met'}.",
        "",
    ]
    lines += [
        "## Sweeps and memory",
        "",
        f"The same 12-run sweep (`{' '.join(SWEEP)}`), basic launcher vs `hydra/launcher=parallel`:",
        "",
        "| launcher | runs | wall time (s) | runs/min |",
        "|---|---|---|---|",
        f"| basic (sequential, 2 threads) | {seq['runs']} | {seq['seconds']:.1f} | "
        f"{seq['runs_per_min']:.1f} |",
        f"| parallel (joblib, 2 jobs x 1 thread) | {par['runs']} | {par['seconds']:.1f} | "
        f"{par['runs_per_min']:.1f} |",
        "",
        f"Parallel / sequential throughput: **{par['runs_per_min'] / seq['runs_per_min']:.2f}x**.",
        "",
        "Peak RSS of one full-MNIST run (`python train.py epochs=1 depth=20`): "
        f"**{system['rss_mb']:.0f} MB**.",
        "",
    ]
    return lines
