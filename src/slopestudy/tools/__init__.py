"""Measurements about the code, not the study: `python -m slopestudy.tools.bench` (speed and
memory ratios side by side) and `python -m slopestudy.tools.forward_check` (the forward half of
the theory on real inputs). Nothing in the package imports them."""
