"""Review a sweep in the real TensorBoard: check its HTTP API, then screenshot it in Chromium.

    python scripts/review_dashboard.py SWEEP_DIR [--out results/figures] [--port 6123]
        [--kernel-sweep DIR] [--kernel-runs REGEX]

Starts `tensorboard --logdir SWEEP_DIR` on 127.0.0.1, checks that every job folder is a run
and that each run has the scalar tags, histograms and hparams this project writes, then takes
headless-Chromium screenshots of the Custom Scalars and HParams views, the step-0 signal profile
and the step-0 kernel profile (needs Debian's `chromium` and Playwright, the `[review]` extra).
Every screenshot has smoothing 0, outlier clipping off and whole run names. `--kernel-sweep DIR`
takes the kernel profile of another sweep (a second TensorBoard; e.g. deep nets), `--kernel-runs
REGEX` keeps only the matching runs in it. Exits non-zero if anything is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--hide-scrollbars",
]  # fmt: skip
# Settings TensorBoard keeps in the browser, seeded before every page loads. Smoothing 0: a profile
# is not a time series (smoothing would average neighbouring *layers*), nor are one-epoch curves;
# outlier clipping off: the tiny input-side norms are the point. The Time Series runs sidebar and
# cards are widened so that whole run names show; the settings pane stays open as the record.
TIME_SERIES_SETTINGS = {
    "scalarSmoothing": 0, "ignoreOutliers": False, "sideBarWidthInPercent": 30,
    "timeSeriesCardMinWidth": 700, "timeSeriesSettingsPaneOpened": True,
}  # fmt: skip
# The Polymer dashboards (Custom Scalars) read outlier clipping from localStorage, smoothing from
# the URL hash (`&_smoothingWeight=0`), and size their sidebar with these CSS variables.
SEED_SETTINGS = f"""
localStorage.setItem("_tb_global_settings", {json.dumps(json.dumps(TIME_SERIES_SETTINGS))});
localStorage.setItem("_ignoreYOutliers", "false");
"""
WIDE_SIDEBAR = (
    ":root { --tf-dashboard-layout-sidebar-basis: 30%; --tf-dashboard-layout-sidebar-max-width: 640px; }"
)
KERNEL_TAG = "1_profile/kernel_gap/epoch_00"


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


def settle(page, ms: int = 3000) -> None:
    """Let the page fetch its data and draw its charts."""
    with contextlib.suppress(Exception):  # TensorBoard may keep polling: the fixed wait still applies
        page.wait_for_load_state("networkidle", timeout=60_000)
    page.wait_for_timeout(ms)


def log_scale_profile(page, url: str, path: Path, chart_px: int | None = None) -> None:
    """Time Series cards of the tags the URL's tagFilter matches (profiles: x = layer), each with
    its y axis in log scale, its data table expanded to every run and, given chart_px, its chart
    that tall."""
    page.goto(url)
    options = page.get_by_label("More line chart options")
    options.first.wait_for(timeout=120_000)
    settle(page)
    for i in range(options.count()):
        options.nth(i).click()
        page.get_by_role("menuitem", name="Toggle Y-axis log scale").last.click()
        page.wait_for_timeout(500)
    expand = page.get_by_label("Expand Table")
    for i in range(expand.count()):
        expand.nth(i).click()
    if chart_px:
        charts = page.locator(".chart-container")
        for i in range(charts.count()):
            charts.nth(i).evaluate(f"e => {{ e.style.height = '{chart_px}px'; }}")
    page.mouse.move(10, 10)  # off the charts: no hover tooltip in the picture
    settle(page)
    page.screenshot(path=str(path), timeout=300_000)


def screenshots(base: str, out: Path, kernel_base: str, kernel_runs: str) -> list[Path]:
    """Custom Scalars, HParams, the step-0 signal profile and the step-0 kernel profile, in headless
    Chromium driven by Playwright (`pip install playwright`, no browser download: it uses the
    system Chromium)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise FileNotFoundError("chromium not found (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("playwright not installed (pip install -e '.[review]'): no screenshots")
        return []
    paths = {name: out / f"tensorboard_{name}.png" for name in
             ("custom_scalars", "hparams", "profile_log", "kernel_profile")}  # fmt: skip
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS, headless=True)

        def new_page(width: int, height: int):
            context = browser.new_context(viewport={"width": width, "height": height})
            context.add_init_script(SEED_SETTINGS)
            return context.new_page()

        page = new_page(1800, 1300)  # tall enough to list all 24 runs of the study grid
        page.goto(f"{base}/#custom_scalars&_smoothingWeight=0")
        page.get_by_text("1 layer profiles").first.wait_for(timeout=120_000)
        page.add_style_tag(content=WIDE_SIDEBAR)
        settle(page, 10_000)
        page.screenshot(path=str(paths["custom_scalars"]), timeout=300_000)

        page = new_page(2500, 1100)  # wide enough for whole trial IDs and every metric column
        page.goto(f"{base}/#hparams")
        columns = page.locator("vaadin-grid-column")
        columns.first.wait_for(state="attached", timeout=120_000)
        settle(page)
        columns.first.evaluate("c => { c.width = '37em'; }")  # Trial ID: the run name
        for i in range(2, columns.count()):
            columns.nth(i).evaluate("c => { c.width = '7em'; c.flexGrow = 1; }")
        settle(page, 2000)
        page.screenshot(path=str(paths["hparams"]), timeout=300_000)

        tags = "1_profile%2Fsignal_norm%2Fepoch_00"
        url = f"{base}/?tagFilter={tags}#timeseries"
        log_scale_profile(new_page(1800, 1400), url, paths["profile_log"], chart_px=480)
        tags = "1_profile%2Fkernel_gap(_theory)%3F%2Fepoch_00"  # measured and the correlation map's
        url = f"{kernel_base}/?tagFilter={tags}&runFilter={quote(kernel_runs, safe='')}#timeseries"
        log_scale_profile(new_page(1800, 1150), url, paths["kernel_profile"])
        browser.close()
    return list(paths.values())


def start_tensorboard(logdir: Path, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1",
           "--port", str(port), "--reload_interval", "2"]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def has_kernel_profile(base: str, seconds: float = 120) -> bool:
    """Whether some run of the TensorBoard at `base` has the step-0 kernel profile (waits for the
    event files to load)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(KERNEL_TAG in t for t in get_json(f"{base}/data/plugin/scalars/tags").values()):
            return True
        time.sleep(2)
    return False


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep_dir", type=Path)
    p.add_argument("--out", type=Path, default=Path("results/figures"))
    p.add_argument("--port", type=int, default=6123)
    p.add_argument("--no-screenshots", action="store_true")
    p.add_argument("--kernel-sweep", type=Path, help="sweep for the kernel-profile screenshot (port+1)")
    p.add_argument("--kernel-runs", default="", help="run-name regex for the kernel-profile screenshot")
    args = p.parse_args()
    sweep = args.sweep_dir.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{args.port}"
    procs = [start_tensorboard(sweep, args.port)]
    try:
        wait_until_ready(base, procs[0])
        problems = check_api(base, sweep)
        if not args.no_screenshots:
            kernel_base = base
            if args.kernel_sweep is not None:
                kernel_base = f"http://127.0.0.1:{args.port + 1}"
                procs.append(start_tensorboard(args.kernel_sweep.resolve(), args.port + 1))
                wait_until_ready(kernel_base, procs[-1])
                if not has_kernel_profile(kernel_base):
                    print(f"{args.kernel_sweep} has no {KERNEL_TAG}: kernel profile of {sweep}")
                    kernel_base = base
            for path in screenshots(base, args.out, kernel_base, args.kernel_runs):
                print(f"screenshot: {path}")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    print("dashboard review: " + ("OK" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
