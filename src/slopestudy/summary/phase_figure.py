"""The phase diagram's figure: mean validation accuracy over (sigma^2, depth), a panel per
slope, against the critical gain and the theory contours of constant total shrinkage."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from slopestudy.summary.cells import Summary  # noqa: E402
from slopestudy.summary.plotgrid import grid  # noqa: E402


def _phase_panel(ax, part, gains, depths, slope: float, best_k) -> plt.cm.ScalarMappable:
    """One slope's mean val accuracy over (sigma^2, depth) with its theory contours."""
    m = part.pivot_table(index="depth", columns="init_gain", values="val_acc_mean").reindex(
        index=depths, columns=gains
    )
    im = ax.pcolormesh(
        _edges(gains), _edges(depths), m.values, cmap="viridis", vmin=0, vmax=1, shading="flat"
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.axvline(2 / (1 + slope**2), color="w", ls="--", lw=1.5, label="critical 2/(1+a²)")
    fine = np.geomspace(gains[0], gains[-1], 400)
    logg = np.abs(np.log10(fine * (1 + slope**2) / 2))
    for k in (1, 2, 4, 8):
        with np.errstate(divide="ignore"):
            d = np.where(logg > 1e-9, k / logg, np.inf)
        ax.plot(fine, np.clip(d, depths[0] * 0.8, depths[-1] * 1.25), "-" if k == best_k else ":",
                color="orange", lw=1)  # fmt: skip
        if depths[0] <= d[0]:  # label a contour where it enters the panel (not below its edge)
            ax.text(fine[0], min(d[0], depths[-1]), f"k={k}", color="orange", fontsize=7, va="bottom")
    ax.set_ylim(_edges(depths)[0], _edges(depths)[-1])
    ax.set_xticks(gains, [f"{g:.2g}" for g in gains], fontsize=7)
    ax.set_yticks(depths, [str(d) for d in depths], fontsize=7)
    ax.minorticks_off()
    title = f"slope a={slope:g}" + (f" (solid: best-fitting k={best_k:g})" if best_k else "")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("σ² (Var(W) = σ²/fan_in)")
    ax.legend(fontsize=7, loc="lower right")
    return im


def phase_diagram(summary: Summary) -> plt.Figure | None:
    """Mean val accuracy over (sigma^2, depth), one panel per slope, with the critical gain
    2/(1+a^2) and theory contours of constant total shrinkage depth·|log10 g| = k."""
    agg = summary.agg
    if summary.phase.empty:
        return None
    slopes = sorted(agg["slope"].unique())
    gains = np.array(sorted(agg["init_gain"].unique()))
    depths = np.array(sorted(agg["depth"].unique()))
    best = summary.phase[summary.phase["best"]].set_index("slope")["k"]
    fig, axes = grid(len(slopes), 4.6, 4.0)
    for ax, slope in zip(axes, slopes, strict=True):
        im = _phase_panel(ax, agg[agg["slope"] == slope], gains, depths, slope, best.get(slope))
    for ax in axes:
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("depth (Linear layers)")
    fig.colorbar(im, ax=axes, label="validation accuracy (mean over seeds)")
    fig.suptitle("Where deep LeakyReLU MLPs train: the slope shifts the edge like a rescaled init "
                 "(orange: depth·|log10 g| = k)", fontsize=10)  # fmt: skip
    return fig


def _edges(centers: np.ndarray) -> np.ndarray:
    """Cell edges halfway (geometrically) between centers, for pcolormesh on log axes."""
    c = np.asarray(centers, dtype=float)
    mid = np.sqrt(c[1:] * c[:-1])
    return np.concatenate([[c[0] ** 2 / mid[0]], mid, [c[-1] ** 2 / mid[-1]]])
