"""Conv-4: the four-block convolutional backbone of the few-shot literature.

Each block is a 3x3 convolution (64 filters, padding 1), batch normalisation, ReLU and 2x2 max
pooling (Vinyals et al. 2016, Matching Networks; Snell et al. 2017, Prototypical Networks; Finn et
al. 2017, MAML). On 28x28 Omniglot images the output is 64 x 1 x 1, i.e. a 64-d embedding.

The audio variant applies the same blocks to a log-mel spectrogram (1 x n_mels x frames) and
averages the last feature map over time and frequency, so clips of any length give a 64-d
embedding (``AudioConv4``).
"""

from __future__ import annotations

import torch
from torch import nn


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 conv (padding 1) - batch norm - ReLU - 2x2 max pool."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True), nn.MaxPool2d(2))


class Conv4(nn.Module):
    """Conv-4 image backbone.

    Parameters
    ----------
    in_channels : int, default 1
        1 for Omniglot (grey), 3 for colour images.
    hidden : int, default 64
        Filters per block.
    n_blocks : int, default 4

    Shapes
    ------
    input (B, in_channels, H, W) float32 (Omniglot: H = W = 28, strokes 1, background 0) ->
    output (B, hidden * (H // 16) * (W // 16)) float32 (64 for 28x28).
    """

    def __init__(self, in_channels: int = 1, hidden: int = 64, n_blocks: int = 4):
        super().__init__()
        if n_blocks < 1 or hidden < 1 or in_channels < 1:
            raise ValueError(f"Conv4 needs in_channels, hidden, n_blocks >= 1, got {in_channels}, {hidden}, {n_blocks}")
        self.config = {"in_channels": int(in_channels), "hidden": int(hidden), "n_blocks": int(n_blocks)}
        chans = [in_channels] + [hidden] * n_blocks
        self.encoder = nn.Sequential(*[conv_block(a, b) for a, b in zip(chans[:-1], chans[1:])])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.config["in_channels"]:
            raise ValueError(f"Conv4 expects (batch, {self.config['in_channels']}, H, W) images, got shape {tuple(x.shape)}")
        return self.encoder(x).flatten(1)


class AudioConv4(Conv4):
    """Conv-4 on log-mel spectrograms, globally average-pooled.

    Shapes
    ------
    input (B, 1, n_mels, frames) float32 (n_mels and frames >= 16) -> output (B, hidden) float32.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.config["in_channels"]:
            raise ValueError(f"AudioConv4 expects (batch, {self.config['in_channels']}, n_mels, frames), got shape {tuple(x.shape)}")
        return self.encoder(x).mean(dim=(2, 3))
