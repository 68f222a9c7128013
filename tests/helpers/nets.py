"""Small nets built from config keys, the theory's decay for them, and an independent autograd
reference for the gradient probes."""

from __future__ import annotations

import torch
from torch import nn

from slopestudy.config import Init, StudyConfig
from slopestudy.run.model import build_mlp, linears
from slopestudy.science.profiles import theory_decay_per_layer


def mlp(**kw):
    """build_mlp for the config keys given (the rest at their defaults)."""
    return build_mlp(StudyConfig(**kw))


def theory_decay(init, slope, width=256, gain=2.0, depth=10, **kw):
    """profiles.theory_decay_per_layer for these keys (for LeakyReLU the decay does not depend on depth)."""
    return theory_decay_per_layer(StudyConfig(init=Init(init), slope=slope, width=width, init_gain=gain,
                                              depth=depth, **kw))  # fmt: skip


def autograd_reference(model, x, y):
    """||dL/dW_l|| and ||dL/dz_l|| computed independently, by retain_grad on each z_l."""
    zs, h = [], x
    for m in model:
        h = m(h)
        if isinstance(m, nn.Linear):
            h.retain_grad()
            zs.append(h)
            h = h.clone()  # keep z_l intact even if the activation were in-place
    model.zero_grad()
    nn.functional.cross_entropy(h, y).backward()
    return (
        torch.stack([layer.weight.grad.norm() for layer in linears(model)]),
        torch.stack([z.grad.norm() for z in zs]),
    )
