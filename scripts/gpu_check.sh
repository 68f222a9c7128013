#!/usr/bin/env bash
# The whole GPU check in one call (issues 13, 21), on a machine with a CUDA GPU and the .gpu/
# folder from scripts/gpu_prepare.sh:
#   run(command="bash scripts/gpu_check.sh", carry=[".gpu"], timeout_s=480)
# Every step runs under `timeout`, inside one overall budget (CHECK_BUDGET_S, default 430 s), so
# one call always returns with what it learned. Everything goes to $OUT (or ./gpu_out), at most
# 8 files (what the device tool brings back):
#   check.log           the console: python/torch/GPU, each step's exit status and timing
#   study_gpu.log       the default 24-run `make study` sweep (basic launcher, device=cuda)
#   study_runs.tsv      per run: training seconds (run.json history) and wall (job folder times)
#   study_runs.tar.gz   the sweep's run.json files and summary, without TensorBoard events
#   gpu_tests.log       pytest -m gpu
#   bench_gpu.md        python -m slopestudy.tools.bench --device cuda
#   profile.txt         where one depth-30 run's time goes; CUDA graph and batched-runs prototypes
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/check.log") 2>&1
export PYTHONUNBUFFERED=1
T0=$(date +%s)
DEADLINE=$((T0 + ${CHECK_BUDGET_S:-430}))
step() { echo; echo "== $1 (t=$(($(date +%s) - T0)) s)"; }
# cap N: N seconds, or what is left of the overall budget if that is less (at least 5)
cap() { local c=$1 l=$((DEADLINE - $(date +%s))); ((l < c)) && c=$l; ((c < 5)) && c=5; echo "$c"; }

step "python, torch, GPU"
python3 --version  # .gpu/whl holds only py3-none-any wheels: any Python 3 takes them
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
timeout 60 python3 -c "import torch, torchvision; print('torch', torch.__version__, '| torchvision', \
torchvision.__version__, '| CUDA', torch.version.cuda, '|', torch.cuda.get_device_name())" || exit 1

step "install the wheels from .gpu/whl (hydra-core, omegaconf, antlr4, joblib launcher)"
timeout 120 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .gpu/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src
timeout 60 python3 -c "import hydra, omegaconf, tqdm, tabulate; print('hydra', hydra.__version__)" || exit 1

step "MNIST from .gpu/mnist"
mkdir -p data/MNIST/raw && cp .gpu/mnist/*.gz data/MNIST/raw/
timeout 60 python3 -m slopestudy.run.data --root data || exit 1  # unpacks the .gz and checks MD5

step "the default 24-run study sweep (make study's STUDY_ARGS), basic launcher, device=cuda"
SWEEP=/tmp/study_gpu
rm -rf "$SWEEP"  # from empty: a warm machine's earlier sweep would be skipped, not timed
start=$(date +%s.%N)
timeout "$(cap 170)" python3 train.py -m slope=0,0.01,0.2 init=pytorch,kaiming device=cuda \
  "hydra.sweep.dir=$SWEEP" > "$OUT/study_gpu.log" 2>&1
rc=$?
end=$(date +%s.%N)
python3 -c "print(f'study sweep: rc=$rc, {($end - $start):.1f} s wall for the 24-run sweep')"
cat > /tmp/runs_table.py <<'PY'
"""Per run of a sweep: training seconds (run.json history) and the job's wall time (from its
.hydra/config.yaml, written as the job starts, to its run.json, written last)."""
import json
import sys
from collections import defaultdict
from pathlib import Path

sweep, out = Path(sys.argv[1]), Path(sys.argv[2])
t_start, t_end = float(sys.argv[3]), float(sys.argv[4])  # the sweep command's start and end (epoch s)
rows = []
for rj in sorted(sweep.rglob("run.json"), key=lambda p: (p.parent / ".hydra" / "config.yaml").stat().st_mtime):
    r, job = json.loads(rj.read_text()), rj.parent
    cfg = r.get("config", {})
    wall = rj.stat().st_mtime - (job / ".hydra" / "config.yaml").stat().st_mtime
    epochs = [h["seconds"] for h in r.get("history", [])[1:]]
    acc = (r.get("final") or {}).get("test_acc")
    rows.append((str(job.relative_to(sweep)), cfg.get("depth"), r.get("status"), r.get("device"),
                 sum(epochs), wall, acc, epochs))
with out.open("w") as f:
    f.write("job\tdepth\tstatus\tdevice\ttrain_s\twall_s\ttest_acc\tepoch_s\n")
    for job, depth, status, dev, train, wall, acc, epochs in rows:
        f.write(f"{job}\t{depth}\t{status}\t{dev}\t{train:.2f}\t{wall:.2f}\t{acc}\t{epochs}\n")
print(f"{len(rows)} run.json; status: {dict((s, sum(r[2] == s for r in rows)) for s in {r[2] for r in rows})}; "
      f"devices: {sorted({str(r[3]) for r in rows})}")
if rows:
    print(f"sum over runs: training {sum(r[4] for r in rows):.1f} s, job wall {sum(r[5] for r in rows):.1f} s "
          f"(first job, with CUDA init and data load: {rows[0][5]:.1f} s)")
    first = min((p.parent / ".hydra" / "config.yaml").stat().st_mtime for p in sweep.rglob("run.json"))
    last = max(p.stat().st_mtime for p in sweep.rglob("run.json"))
    print(f"sweep phases: {first - t_start:.1f} s to the first job (interpreter, imports, config checks), "
          f"{last - first:.1f} s of jobs, {t_end - last:.1f} s after the last job (summary, figures)")
    by = defaultdict(list)
    for r in rows[1:]:
        by[r[1]].append(r)
    for depth in sorted(by):
        rs = by[depth]
        print(f"  depth {depth:>2}: {len(rs)} runs (first job left out), mean training {sum(r[4] for r in rs) / len(rs):.2f}"
              f" s, mean job wall {sum(r[5] for r in rs) / len(rs):.2f} s")
PY
timeout 60 python3 /tmp/runs_table.py "$SWEEP" "$OUT/study_runs.tsv" "$start" "$end"
tail -40 "$OUT/study_gpu.log"
tar czf "$OUT/study_runs.tar.gz" -C "$SWEEP" --exclude='events.out.tfevents.*' --exclude='*.pt' . 2>/dev/null

step "gpu-marked tests"
timeout "$(cap 120)" python3 -m pytest -m gpu -v -p no:cacheprovider tests/test_run_gpu.py > "$OUT/gpu_tests.log" 2>&1
echo "pytest -m gpu: rc=$?"; tail -8 "$OUT/gpu_tests.log"

step "benchmark"
timeout "$(cap 100)" python3 -m slopestudy.tools.bench --device cuda --rounds 3 --out "$OUT/bench_gpu.md"
echo "bench: rc=$?"

step "profile of one depth-30 run, and two fixes measured"
cat > /tmp/gpu_profile.py <<'PY'
"""Where the time of one run goes on the GPU, and two fixes measured (issue 21).

Depth 30 (the sweep's longest runs), width 256, batch 128, full MNIST train split. Each part is
guarded: one failing part prints its error and the others still run."""
import os
import tempfile
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

from slopestudy.tools import bench
from slopestudy.run import data as data_mod
from slopestudy.config import DataConfig, Device, Init, StudyConfig
from slopestudy.run.trainer import Run
from slopestudy.run.model import build_mlp, linears

DEV = torch.device(os.environ.get("PROFILE_DEVICE", "cuda"))
QUICK = os.environ.get("PROFILE_QUICK") == "1"  # tiny sizes: check the code path on a CPU
bench.DEVICE = DEV
DEPTH = int(os.environ.get("PROFILE_DEPTH", "30"))


def sync():
    if DEV.type == "cuda":
        torch.cuda.synchronize()


def timed(fn):
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t0, out


def part(title):
    def wrap(fn):
        print(f"\n-- {title}", flush=True)
        try:
            fn()
        except Exception:  # noqa: BLE001 - report and go on
            traceback.print_exc()
        return fn

    return wrap


dcfg = DataConfig(root="data", fetch=False, train_size=2048 if QUICK else None, test_size=512 if QUICK else None)
d = data_mod.load(dcfg, DEV)
N = len(d.x_train)
cfg = StudyConfig(depth=DEPTH, device=Device(DEV.type), data=dcfg)
steps = -(-N // cfg.batch_size)
print(f"device {DEV} ({torch.cuda.get_device_name() if DEV.type == 'cuda' else 'cpu'}), torch {torch.__version__}, "
      f"depth {DEPTH}, width {cfg.width}, batch {cfg.batch_size}, {N} train examples, {steps} steps/epoch")


@part("one run's epoch, piece by piece (seconds; 2nd epoch of a warm process)")
def _():
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(cfg, Path(tmp), data=d)
        run.open_logger()
        run.train_epoch()  # warm-up: allocator, cuBLAS handles, autotuning
        t_epoch, _ = timed(run.train_epoch)
        t_end, _ = timed(lambda: run.end_of_epoch(1, run.step, 0.0, t_epoch))
        t_ckpt, _ = timed(run.save_checkpoint)
        t_json, _ = timed(run.save)
        run.logger.close()
    t_bare = N / bench.bare_loop(cfg, d)
    print(f"instrumented train_epoch {t_epoch:.3f} | bare loop epoch {t_bare:.3f} | end_of_epoch (eval val+test, "
          f"activation stats, logging) {t_end:.3f} | checkpoint {t_ckpt:.3f} | run.json {t_json:.3f}")
    print(f"per step: instrumented {1e3 * t_epoch / steps:.3f} ms, bare {1e3 * t_bare / steps:.3f} ms")


def bare_steps(model, opt, batch, n_steps):
    g = torch.Generator(device=DEV).manual_seed(0)
    idx = torch.randint(0, N, (n_steps, batch), device=DEV, generator=g)
    def go():
        for i in range(n_steps):
            loss = F.cross_entropy(model(d.x_train[idx[i]]), d.y_train[idx[i]])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return go


@part("launch bound? ms per bare training step against batch size (same model)")
def _():
    torch.manual_seed(0)
    model = build_mlp(StudyConfig(depth=DEPTH, width=cfg.width, slope=cfg.slope)).to(DEV)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    n = 20 if QUICK else 200
    for batch in (32, 128, 512, 2048, 8192):
        bare_steps(model, opt, batch, 5)()
        t, _ = timed(bare_steps(model, opt, batch, n))
        print(f"batch {batch:>5}: {1e3 * t / n:.3f} ms/step, {batch * n / t:,.0f} samples/s")


@part("torch.profiler over 20 bare steps at batch 128: kernels per step, GPU busy time vs wall")
def _():
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    model = build_mlp(StudyConfig(depth=DEPTH, width=cfg.width, slope=cfg.slope)).to(DEV)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    go = bare_steps(model, opt, 128, 20)
    go()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if DEV.type == "cuda" else [])
    with profile(activities=acts) as prof:
        wall, _ = timed(go)
    ev = prof.events()
    kernels = [e for e in ev if getattr(e, "device_type", None) is not None and "CUDA" in str(e.device_type)]
    busy = sum(e.time_range.elapsed_us() for e in kernels) / 1e6  # kernels run one at a time here
    print(f"wall (with profiler on) {wall:.4f} s for 20 steps; {len(kernels) / 20:.0f} GPU kernels/memsets per step; "
          f"GPU busy {busy:.4f} s = {100 * busy / wall:.0f}% of wall")
    key = "self_device_time_total" if DEV.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=12, max_name_column_width=40))
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10, max_name_column_width=40))


@part("fix 1: the whole training step as one CUDA graph (replay per batch), bare loop, batch 128")
def _():
    if DEV.type != "cuda":
        print("skipped: needs CUDA")
        return
    torch.manual_seed(0)
    model = build_mlp(StudyConfig(depth=DEPTH, width=cfg.width, slope=cfg.slope)).to(DEV)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    sx, sy = d.x_train[:128].clone(), d.y_train[:128].clone()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(sx), sy).backward()
            opt.step()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(g):
        sloss = F.cross_entropy(model(sx), sy)
        sloss.backward()
        opt.step()
    full = N - N % 128  # graph replays need a fixed batch: the last partial batch is dropped here

    def epoch():
        perm = torch.randperm(N, device=DEV)
        for i in range(0, full, 128):
            idx = perm[i : i + 128]
            torch.index_select(d.x_train, 0, idx, out=sx)
            torch.index_select(d.y_train, 0, idx, out=sy)
            g.replay()

    epoch()
    t, _ = timed(epoch)
    t_bare = N / bench.bare_loop(cfg, d)
    print(f"graphed epoch {t:.3f} s ({1e3 * t / (full // 128):.3f} ms/step) vs eager bare epoch {t_bare:.3f} s: "
          f"{t_bare / t:.1f}x faster; loss after an epoch {sloss.item():.4f}")


@part("fix 2: the 6 runs of one depth (slope 0,0.01,0.2 x init pytorch,kaiming) as one batched model (bmm)")
def _():
    runs = [(a, init) for a in (0.0, 0.01, 0.2) for init in (Init.pytorch, Init.kaiming)]
    k = len(runs)
    models = []
    for a, init in runs:
        torch.manual_seed(0)
        models.append(build_mlp(StudyConfig(depth=DEPTH, width=cfg.width, slope=a, init=Init(init))).to(DEV))
    # Stacked parameters: W[l] is (K, out, in), b[l] is (K, 1, out); each run keeps its own slope.
    ws = [torch.stack([linears(m)[l].weight.detach() for m in models]).requires_grad_() for l in range(DEPTH)]
    bs = [torch.stack([linears(m)[l].bias.detach() for m in models]).unsqueeze(1).requires_grad_()
          for l in range(DEPTH)]
    slope = torch.tensor([a for a, _ in runs], device=DEV).view(k, 1, 1)

    def forward(x):  # x: (K, B, 784)
        for l in range(DEPTH):
            x = torch.baddbmm(bs[l], x, ws[l].transpose(1, 2))
            if l < DEPTH - 1:
                x = torch.where(x > 0, x, x * slope)
        return x

    def losses(out, y):  # y: (K, B); the sum of per-run mean losses: each run's gradient is its own
        return F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none").view(k, -1).mean(1)

    xb, yb = d.x_train[:128], d.y_train[:128]
    ref = torch.stack([F.cross_entropy(m(xb), yb) for m in models])
    got = losses(forward(xb.expand(k, -1, -1)), yb.expand(k, -1))
    torch.testing.assert_close(got, ref.detach(), rtol=1e-4, atol=1e-5)
    print("batched losses equal the 6 separate models' losses on one batch:", [f"{v:.4f}" for v in got.tolist()])
    opt = torch.optim.SGD(ws + bs, lr=cfg.lr, momentum=cfg.momentum)

    def epoch():
        # One batch order per run (seeds differ in a real sweep): a (K, N) permutation.
        perm = torch.argsort(torch.rand(k, N, device=DEV), dim=1)
        for i in range(0, N, 128):
            idx = perm[:, i : i + 128]
            loss = losses(forward(d.x_train[idx]), d.y_train[idx]).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return loss

    epoch()
    t, loss = timed(epoch)
    t_bare = N / bench.bare_loop(cfg, d)
    print(f"6 runs batched: {t:.3f} s per epoch for all 6 (last batch loss sum {loss.item():.3f}) vs one eager bare "
          f"run {t_bare:.3f} s: {6 * t_bare / t:.1f}x the sweep's training throughput at this depth")
PY
timeout "$(cap 90)" python3 /tmp/gpu_profile.py > "$OUT/profile.txt" 2>&1
echo "profile: rc=$?"; grep -v '^[ -]*$' "$OUT/profile.txt" | grep -v '^ *aten::\|^ *autograd::\|Name  \|^-\{10\}' | head -40

step "done"
echo "files in $OUT:"; ls -la "$OUT"
sleep 1  # let tee write the last lines of check.log
