"""Review a sweep in the real TensorBoard: check its HTTP API, then screenshot it in Chromium.

    python scripts/review_dashboard.py SWEEP_DIR [--out results/figures] [--port 6123]

Starts `tensorboard --logdir SWEEP_DIR` on 127.0.0.1, checks that every job folder is a run
and that each run has the scalar tags, histograms and hparams this project writes, then takes
headless-Chromium screenshots of the Scalars (a layer profile), Custom Scalars and HParams views
(needs Debian's `chromium`). Exits non-zero if anything is missing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--window-size=1500,1000", "--virtual-time-budget=15000",
]  # fmt: skip
# Plain page loads; the layer-profile view needs clicks (profile_screenshot).
VIEWS = {
    "custom_scalars": "#custom_scalars",
    "hparams": "#hparams",
}


def get_json(url: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", "X-TensorBoard-Feature-Flags": "{}"}
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=30) as r:
        return json.loads(r.read())


def wait_until_ready(base: str, proc: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tensorboard exited with code {proc.returncode}")
        try:
            get_json(f"{base}/data/runs")
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"tensorboard did not answer at {base} within {seconds:.0f}s")


def check_api(base: str, sweep: Path) -> list[str]:
    """Problems found through TensorBoard's HTTP API (empty list = all there)."""
    problems = []
    jobs = sorted(str(p.parent.relative_to(sweep)) for p in sweep.rglob("run.json"))
    # The event files may still be loading: retry until every job is a run with its tags.
    for _ in range(60):
        runs = set(get_json(f"{base}/data/runs"))
        tags = get_json(f"{base}/data/plugin/scalars/tags")
        if set(jobs) <= runs and all("5_acc/test" in tags.get(j, {}) for j in jobs):
            break
        time.sleep(1)
    hists = get_json(f"{base}/data/plugin/histograms/tags")
    for job in jobs:
        run = json.loads((sweep / job / "run.json").read_text())
        depth = run["config"]["depth"]
        want = {"4_loss/train", "4_loss/test", "5_acc/test", "final/test_acc", "gradflow/decay_step0"}
        want |= {f"{g}/layer_{i:02d}" for g in ("2_signal_norm", "3_grad_norm") for i in range(depth)}
        want |= {f"6_dead_frac/layer_{i:02d}" for i in range(depth - 1)}
        want |= {f"1_profile/{m}/epoch_00" for m in ("signal_norm", "grad_norm")}
        missing = want - set(tags.get(job, {}))
        if job not in runs:
            problems.append(f"run {job} is not listed by /data/runs")
            continue
        if missing:
            problems.append(f"run {job} lacks scalar tags {sorted(missing)[:5]}")
            continue
        # A profile is a chart against the layer: one point per layer, steps 0..depth-1.
        profile = get_json(
            f"{base}/data/plugin/scalars/scalars?run={quote(job)}&tag=1_profile/signal_norm/epoch_00"
        )
        if [p[1] for p in profile] != list(range(depth)):
            problems.append(f"run {job}: profile steps are {[p[1] for p in profile]}, not the layers")
        if f"grad_hist/layer_{depth - 1:02d}" not in hists.get(job, {}):
            problems.append(f"run {job} lacks gradient histograms")
    problems += check_hparams(base, sweep, jobs)
    texts = get_json(f"{base}/data/plugin/text/tags")
    tables = [t for t in texts.get("summary", []) if t.startswith("tables/")]
    if not tables:
        problems.append("the summary run has no tables in the Text tab")
    print(f"API: {len(runs)} runs listed, {len(jobs)} job folders, {len(tables)} summary tables in Text")
    return problems


def check_hparams(base: str, sweep: Path, jobs: list[str]) -> list[str]:
    """The hparams that differ between the jobs are flagged `differs` and listed first."""
    experiment = get_json(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""})
    infos = experiment.get("hparamInfos", [])
    order = [(h["name"], bool(h.get("differs"))) for h in infos]
    configs = [json.loads((sweep / j / "run.json").read_text())["hparams"] for j in jobs]
    swept = {k for k in configs[0] if len({repr(c.get(k)) for c in configs}) > 1}
    flagged = [name for name, differs in order if differs]
    print("HParams order (differs marked *): " + ", ".join(f"{n}{'*' if d else ''}" for n, d in order))
    problems = []
    if set(flagged) != swept:
        problems.append(f"HParams differs flags {sorted(flagged)} != swept keys {sorted(swept)}")
    if [name for name, _ in order[: len(flagged)]] != flagged:
        problems.append("HParams does not list the differing hparams first")
    metrics = [m["name"]["tag"] for m in experiment.get("metricInfos", [])]
    if "final/test_acc" not in metrics or "gradflow/decay_step0" not in metrics:
        problems.append(f"HParams metrics are {metrics}")
    return problems


def profile_screenshot(base: str, out: Path, chromium: str) -> Path | None:
    """The step-0 layer-profile chart with its y axis in log scale and smoothing off (a profile
    is not a time series). Needs clicks, so it drives Chromium through Playwright
    (`pip install playwright`, no browser download: it uses the system Chromium)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("playwright not installed: no log-scale profile screenshot")
        return None
    path = out / "tensorboard_profile_log.png"
    flags = [f for f in CHROMIUM_FLAGS if not f.startswith(("--headless", "--window-size", "--virtual-time"))]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=flags, headless=True)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.goto(f"{base}/?tagFilter=1_profile%2Fsignal_norm%2Fepoch_00#timeseries")
        page.get_by_label("More line chart options").first.wait_for(timeout=60_000)
        smoothing = page.locator("input.slider-input").first  # the settings pane's smoothing box
        smoothing.fill("0")
        smoothing.press("Enter")
        outliers = page.get_by_text("Ignore outliers in chart scaling")
        if outliers.count():
            outliers.first.click()  # show the whole range: the tiny input-side norms are the point
        page.get_by_label("More line chart options").first.click()
        page.get_by_text("Toggle Y-axis log scale").click()
        page.wait_for_timeout(2000)
        page.screenshot(path=str(path))
        browser.close()
    return path


def screenshots(base: str, out: Path) -> list[Path]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise FileNotFoundError("chromium not found (apt-get install chromium)")
    paths = []
    for name, fragment in VIEWS.items():
        path = out / f"tensorboard_{name}.png"
        with tempfile.TemporaryDirectory() as profile:
            cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={path}",
                   f"{base}/{fragment}"]  # fmt: skip
            subprocess.run(cmd, capture_output=True, timeout=120, check=True)
        paths.append(path)
    profile = profile_screenshot(base, out, chromium)
    return paths + ([profile] if profile else [])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep_dir", type=Path)
    p.add_argument("--out", type=Path, default=Path("results/figures"))
    p.add_argument("--port", type=int, default=6123)
    p.add_argument("--no-screenshots", action="store_true")
    args = p.parse_args()
    sweep = args.sweep_dir.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{args.port}"
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(sweep), "--host", "127.0.0.1",
           "--port", str(args.port), "--reload_interval", "2"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_ready(base, proc)
        problems = check_api(base, sweep)
        if not args.no_screenshots:
            for path in screenshots(base, args.out):
                print(f"screenshot: {path}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    print("dashboard review: " + ("OK" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
