"""slopestudy: LeakyReLU's negative_slope and vanishing gradients in deep MLPs."""

__version__ = "0.1.0"
