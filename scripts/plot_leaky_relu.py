"""Draw LeakyReLU and its derivative for a few slopes: results/figures/leaky_relu.png.

    python scripts/plot_leaky_relu.py [--out results/figures/leaky_relu.png]

Slope 0 is ReLU and slope 1 is the identity: a larger negative_slope is *more linear*
(the article this project grew from says it the other way round).
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

SLOPES = (0.0, 0.01, 0.2, 1.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="results/figures/leaky_relu.png")
    out = Path(p.parse_args().out)
    out.parent.mkdir(parents=True, exist_ok=True)

    x = torch.linspace(-5, 5, 1001, requires_grad=True)
    fig, (ax_f, ax_d) = plt.subplots(1, 2, figsize=(10, 4))
    names = {0.0: "a=0 (ReLU)", 0.01: "a=0.01 (PyTorch default)", 0.2: "a=0.2", 1.0: "a=1 (identity)"}
    for slope in SLOPES:
        y = nn.LeakyReLU(negative_slope=slope)(x)
        (grad,) = torch.autograd.grad(y.sum(), x)  # the derivative through autograd, not by hand
        style = {"ls": ":", "color": "gray"} if slope == 1.0 else {}
        ax_f.plot(x.detach(), y.detach(), label=names[slope], **style)
        ax_d.plot(x.detach(), grad, label=names[slope], **style)
    ax_f.set_title("LeakyReLU(x) = x if x > 0 else a·x")
    ax_d.set_title("derivative: 1 if x > 0 else a")
    for ax in (ax_f, ax_d):
        ax.axhline(0, color="k", lw=0.5)
        ax.axvline(0, color="k", lw=0.5)
        ax.set_xlabel("x")
        ax.grid(alpha=0.3)
    ax_f.legend(title="negative_slope a")
    ax_d.set_ylim(-0.1, 1.15)
    fig.suptitle("Larger negative_slope = more linear: a=0 is ReLU, a=1 is the identity")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
