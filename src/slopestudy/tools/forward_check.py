"""Which half of the mean-field theory fails when a step-0 measurement disagrees with it.

The theory predicts the backprop decay in two steps: a forward recursion for each layer's
pre-activation second moment q_l, then a backward gain chi_l = sigma^2 E[phi'(z)^2], z ~ N(0, q_l).
This check builds the study's own net (model.build_mlp, the run's seed), runs one real batch
forward and backward, and compares the measured decay of ||dL/dz_l|| (profiles.fit_decay) with:

- `plain`: the full recursion from the inputs' mean second moment (what the tables' theory column
  uses, but with this batch's q_in instead of 1),
- `input_mix`: the recursion run per example from its own q_in, the batch's squared signal norms
  summed (examples differ in ink, and the batch norm is dominated by the slowest-decaying ones),
- `at_measured_q`: the backward gain evaluated at each example's *measured* q_l, summed the same
  way; only the backward half of the theory is used,
- `at_measured_units`: the same with E[phi'(z)^2] replaced by its average over the net's own units
  (no Gaussian assumption left).

If `at_measured_q` matches the measurement and `plain` does not, the forward recursion is what
fails (at finite width), not the backward gain. For a positively homogeneous activation chi does
not depend on q, so all three coincide (tested).

    python -m slopestudy.tools.forward_check act=gelu init=kaiming --depths 10 30 50 --seeds 20 \
        --out results/forward_check/gelu_kaiming.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import yaml

from slopestudy.config import DataConfig, StudyConfig, config_from_record
from slopestudy.run.data import load
from slopestudy.run.model import build_mlp, linears
from slopestudy.run.probes import GradientProbe
from slopestudy.science import theory
from slopestudy.science.profiles import fit_decay, theory_act, weight_variance_factor
from slopestudy.study.analyses.fixes import forward_check_table


def _batch_fit(per_example: np.ndarray) -> float:
    """Fitted decay of the batch norm from per-example log10 ||dL/dz_l||^2 (examples x layers)."""
    batch = 0.5 * np.log10((10.0**per_example).sum(axis=0))
    return fit_decay(list(10.0 ** (batch - batch[-1])))


def measure(cfg: StudyConfig, x: torch.Tensor, y: torch.Tensor) -> dict:
    """One net (cfg.seed) on one batch: the measured decay and the three predictions above, plus
    the median per-example q of the middle and last hidden layer against the recursion's (run
    from the mean q_in, and for the middle layer also per example)."""
    if cfg.norm != "none" or cfg.residual:
        raise ValueError("forward_check tests the plain recursion: norm=none, residual=false only")
    torch.manual_seed(cfg.seed)
    model = build_mlp(cfg)
    zs: list[torch.Tensor] = []
    handles = [layer.register_forward_hook(lambda _m, _i, z: zs.append(z.detach()))
               for layer in linears(model)]  # fmt: skip
    probe = GradientProbe(model)
    probe.armed = True
    logits = model(x)
    F.cross_entropy(logits, y).backward()
    for handle in handles:
        handle.remove()
    signal = probe.read()[1].tolist()
    probe.armed = False

    act, kw = theory_act(cfg)
    sigma2 = weight_variance_factor(cfg)  # every Linear, the first (fan_in 784) included: fan-in inits
    depth = cfg.depth
    q_in = (x**2).mean(dim=1).double().numpy()
    out_grad = 2 * np.log10(_output_grad_norms(logits.detach(), y))
    e_dphi2 = np.vectorize(lambda q: theory.moments(act, float(q), **kw)[1])

    def summed(log_chi: np.ndarray) -> float:  # log_chi: examples x (depth-1)
        cum = np.cumsum(log_chi[:, ::-1], axis=1)[:, ::-1]
        return _batch_fit(np.concatenate([cum, np.zeros((len(cum), 1))], axis=1) + out_grad[:, None])

    q_measured = np.stack([(z.double() ** 2).mean(dim=1).numpy() for z in zs], axis=1)
    # no Gaussian assumption at all: phi'(z)^2 averaged over the net's own units, per example
    act_fn = theory.get(act)
    units_dphi2 = np.stack([(act_fn.dphi(z.double().numpy(), **kw) ** 2).mean(axis=1) for z in zs], axis=1)
    q_mix = np.array([theory.forward_variances(act, sigma2, depth, float(q), **kw) for q in q_in])
    mid = depth // 2
    q_plain = theory.forward_variances(act, sigma2, depth, float(q_in.mean()), **kw)
    return {
        "act": act, "init": cfg.init, "depth": depth, "width": cfg.width, "seed": cfg.seed,
        "measured": fit_decay(signal),
        "plain": theory.predicted_decay_per_layer(act, sigma2, depth, float(q_in.mean()), **kw),
        "input_mix": summed(np.log10(sigma2 * e_dphi2(q_mix[:, :-1]))),
        "at_measured_q": summed(np.log10(sigma2 * e_dphi2(q_measured[:, :-1]))),
        "at_measured_units": summed(np.log10(sigma2 * units_dphi2[:, :-1])),
        "q_mid_measured": float(np.median(q_measured[:, mid])), "q_mid_plain": q_plain[mid],
        "q_mid_input_mix": float(np.median(q_mix[:, mid])),
        "q_last_measured": float(np.median(q_measured[:, depth - 2])), "q_last_plain": q_plain[depth - 2],
    }  # fmt: skip


def _output_grad_norms(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """||dL/dlogits|| per example for the batch-mean cross-entropy: (softmax - onehot) / batch."""
    p = torch.softmax(logits, dim=1)
    p[torch.arange(len(y)), y] -= 1
    return (p.norm(dim=1) / len(y)).double().numpy()


def run(config: dict, depths: list[int], seeds: int, x: torch.Tensor, y: torch.Tensor) -> pd.DataFrame:
    """measure() for every depth and seeds 0..seeds-1 of one config (a dict of StudyConfig keys)."""
    rows = []
    for depth in depths:
        for seed in range(seeds):
            rows.append(measure(config_from_record({**config, "depth": depth, "seed": seed}), x, y))
            print(f"  depth {depth} seed {seed}: measured {rows[-1]['measured']:.3f}", file=sys.stderr)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "overrides", nargs="*", help="StudyConfig keys (act=gelu init=kaiming) and data.* keys"
    )
    parser.add_argument("--depths", type=int, nargs="+", default=[30])
    parser.add_argument("--widths", type=int, nargs="+", default=[256])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--batch", type=int, default=128, help="the first N training examples")
    parser.add_argument("--root", default="data")
    parser.add_argument("--out", type=Path, help="write the per-seed rows to this CSV")
    args = parser.parse_args(argv)
    config, data_keys = {}, {"root": args.root}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        group, name = (data_keys, key[5:]) if key.startswith("data.") else (config, key)
        fields = (DataConfig if group is data_keys else StudyConfig).__dataclass_fields__
        if not sep or name not in fields or name == "data":
            parser.error(f"not a StudyConfig or data.* key=value: {item!r}")
        group[name] = yaml.safe_load(value)  # 0.2 -> float, false -> bool, gelu -> str, as Hydra reads it
    torch.set_num_threads(1)
    data = load(DataConfig(**data_keys), torch.device("cpu"))
    x, y = data.x_train[: args.batch], data.y_train[: args.batch]
    frame = pd.concat([run({**config, "width": w}, args.depths, args.seeds, x, y) for w in args.widths])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(args.out, index=False)
    print(forward_check_table(frame).to_markdown(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
