"""What we measure inside the network, kept on the device until a log step reads it.

- weight-gradient norm of layer l:  ||dL/dW_l||_F after backward(), before step()
- backprop signal norm of layer l: ||dL/dz_l||_F over the batch, z_l = output of Linear l
- on a fixed probe batch: dead-unit fraction (pre-activation <= 0 for every example) and
  mean/std of each hidden layer's activations.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from slopestudy.run.model import activations, linears


class GradientProbe:
    """Per-layer gradient norms, measured only on steps where `armed` is True.

    Arming registers a forward hook on each Linear, which registers a tensor hook on its
    output z_l; `read()` removes them again, so unarmed steps run the plain fast path
    (a module with hooks takes nn.Module's slower call path, which costs more as depth grows).
    Tensor hooks registered before an in-place op (LeakyReLU(inplace=True) overwrites z_l)
    still receive the gradient w.r.t. the value before the op, i.e. dL/dz_l, so `inplace`
    changes nothing.
    """

    def __init__(self, model: nn.Sequential) -> None:
        self.layers = linears(model)
        self._handles: list = []
        self._signal: list[torch.Tensor | None] = [None] * len(self.layers)

    @property
    def armed(self) -> bool:
        return bool(self._handles)

    @armed.setter
    def armed(self, value: bool) -> None:
        if value and not self._handles:
            self._handles = [
                layer.register_forward_hook(self._forward_hook(i)) for i, layer in enumerate(self.layers)
            ]
        elif not value:
            for handle in self._handles:
                handle.remove()
            self._handles = []

    def _forward_hook(self, i: int):
        def hook(_module, _inputs, z: torch.Tensor) -> None:
            if z.requires_grad:
                z.register_hook(lambda g: self._store_signal(i, g))

        return hook

    def _store_signal(self, i: int, grad: torch.Tensor) -> None:
        self._signal[i] = torch.linalg.vector_norm(grad)

    def read(self) -> torch.Tensor:
        """(2, L) on the device: row 0 weight-gradient norms, row 1 signal norms."""
        if any(s is None for s in self._signal):
            raise RuntimeError("GradientProbe.read() before an armed backward()")
        weight = torch._foreach_norm([layer.weight.grad for layer in self.layers])
        out = torch.stack([torch.stack(list(weight)), torch.stack(self._signal)])
        self._signal = [None] * len(self.layers)
        return out


def run_hooked(model: nn.Module, x: torch.Tensor, handles: list) -> None:
    """One forward pass of x in eval mode (BatchNorm's running statistics, as at evaluation) for
    the hooks in `handles` to read; then the hooks are removed and the model's mode restored."""
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()


@torch.no_grad()
def activation_stats(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(3, L-1) on the device for the hidden layers: dead fraction (the activation's input <= 0
    for every example), mean and std of the activation's output. Read by hooks on the activation
    modules, so norms and skips in between change nothing; in eval mode (BatchNorm's running
    statistics, as at evaluation)."""
    acts = activations(model)
    if not acts:  # depth 1: no hidden layer
        return torch.zeros(3, 0, device=x.device)
    dead, out_stats = [], []

    def before(_module, inputs):  # a pre-hook sees the input before an in-place LeakyReLU overwrites it
        dead.append((inputs[0] <= 0).all(dim=0).float().mean())

    def after(_module, _inputs, out):
        out_stats.append((out.mean(), out.std()))

    handles = [m.register_forward_pre_hook(before) for m in acts]
    handles += [m.register_forward_hook(after) for m in acts]
    run_hooked(model, x, handles)
    mean, std = zip(*out_stats, strict=True)
    return torch.stack([torch.stack(dead), torch.stack(mean), torch.stack(std)])


@torch.no_grad()
def mean_pair_cosine(x: torch.Tensor) -> torch.Tensor:
    """Mean cosine over all pairs i < j of the rows of x (n, ...): with unit rows u_i,
    sum_{i != j} u_i.u_j = ||sum_i u_i||^2 - n, so no n x n matrix is needed. float64 so that
    1 - cos stays exact to ~1e-12 where representations are nearly identical."""
    u = torch.nn.functional.normalize(x.flatten(1).double(), dim=1)
    n = len(u)
    return (u.sum(dim=0).square().sum() - n) / (n * (n - 1))


@torch.no_grad()
def kernel_profile(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(L,) on the device: the mean cosine between the Linear outputs z_l of every pair of
    different examples of x, layer by layer (eval mode, as activation_stats). Read in a forward
    hook on each Linear, before an in-place activation overwrites z_l."""
    cosines: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda _m, _i, z: cosines.append(mean_pair_cosine(z)))
               for m in linears(model)]  # fmt: skip
    run_hooked(model, x, handles)
    return torch.stack(cosines)


def pair_cosines(x: torch.Tensor) -> np.ndarray:
    """The cosine of every pair i < j of rows of x, as float64 numpy (the inputs' own, for theory)."""
    u = torch.nn.functional.normalize(x.flatten(1).double(), dim=1)
    i, j = torch.triu_indices(len(u), len(u), 1)
    return (u[i] * u[j]).sum(dim=1).cpu().numpy()
