"""AASIST / AASIST-L re-implemented in PyTorch, for importing published checkpoints.

Written from the paper (Jung et al., "AASIST: Audio Anti-Spoofing using
Integrated Spectro-Temporal Graph Attention Networks", ICASSP 2022) and the
reference notes in ``shared/reference/aasist`` (configs, state-dict layout,
intermediate shapes). Module and parameter names follow the published
state-dict layout so that the original checkpoints load with ``strict=True``.

Data flow for one 64600-sample window (AASIST sizes; AASIST-L in brackets)::

    waveform (B, 64600)
    -> fixed sinc band-pass filterbank, 70 filters x 129 taps   (B, 70, 64472)
    -> |.|, 3x3 max-pool, BatchNorm, SELU                       (B, 1, 23, 21490)
    -> 6 residual blocks, each max-pooling time by 3            (B, 64 [24], 23, 29)
    -> spectral graph: max |.| over time + position, GAT, pool  (B, 11 [9], 64 [24])
    -> temporal graph: max |.| over frequency, GAT, pool        (B, 20 [14], 64 [24])
    -> two branches of heterogeneous GAT (with a master node),
       pool, heterogeneous GAT again (residual); element-wise max of branches
    -> readout [max|T|, mean T, max|S|, mean S, master]         (B, 160)
    -> linear                                                   (B, 2)   [spoof, bona fide]

Two details are reproduced on purpose because the published weights depend on
them:

* Residual blocks other than the first own a ``bn1`` BatchNorm whose output
  the original never feeds forward: the first convolution reads the block
  input directly. ``bn1`` is kept (so checkpoints load strictly) but unused.
* Graph pooling keeps ``max(int(n_nodes * ratio), 1)`` nodes, ordered by
  descending score, and all four pools after the first heterogeneous layers
  use ``pool_ratios[2]``; ``pool_ratios[3]`` and ``temperatures[3]`` are unused.

The code is written to export cleanly to ONNX with a dynamic batch axis: node
counts depend only on the (fixed) input length, the sinc filters are a
non-persistent buffer, and the heterogeneous attention map is assembled with
concatenations instead of in-place slice assignment.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

N_SAMPLES = 64600
SAMPLE_RATE = 16000

# ``model_config`` sections of the published AASIST.conf / AASIST-L.conf.
AASIST_CONFIG: dict[str, Any] = {
    "architecture": "AASIST",
    "nb_samp": N_SAMPLES,
    "first_conv": 128,
    "filts": [70, [1, 32], [32, 32], [32, 64], [64, 64]],
    "gat_dims": [64, 32],
    "pool_ratios": [0.5, 0.7, 0.5, 0.5],
    "temperatures": [2.0, 2.0, 100.0, 100.0],
}
AASIST_L_CONFIG: dict[str, Any] = {
    "architecture": "AASIST",
    "nb_samp": N_SAMPLES,
    "first_conv": 128,
    "filts": [70, [1, 32], [32, 32], [32, 24], [24, 24]],
    "gat_dims": [24, 32],
    "pool_ratios": [0.4, 0.5, 0.7, 0.5],
    "temperatures": [2.0, 2.0, 100.0, 100.0],
}
# Variant name (as written in sidecars) -> model config.
VARIANTS: dict[str, dict[str, Any]] = {
    "AASIST": AASIST_CONFIG,
    "AASIST-L": AASIST_L_CONFIG,
}


# --------------------------------------------------------------------------
# Sinc front end
# --------------------------------------------------------------------------

def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def sinc_band_pass(n_filters: int = 70, kernel_size: int = 128,
                   sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Fixed band-pass filterbank, float32 ``(n_filters, taps)``.

    ``taps`` is ``kernel_size`` forced odd (128 -> 129). Band edges are equally
    spaced on the mel scale between the lowest and highest frequency of a
    512-point FFT grid (0 .. sample_rate/2); filter ``i`` is the difference of
    two ideal low-pass sinc kernels (cut-offs ``edge[i+1]`` and ``edge[i]``)
    times a Hamming window. The filters are not learned and not stored in the
    checkpoints.
    """
    taps = kernel_size if kernel_size % 2 else kernel_size + 1
    n_fft = 512
    grid_hz = int(sample_rate / 2) * np.linspace(0, 1, int(n_fft / 2) + 1)
    grid_mel = _hz_to_mel(grid_hz)
    edges = _mel_to_hz(np.linspace(np.min(grid_mel), np.max(grid_mel), n_filters + 1))
    # Time axis and sinc argument in float32, the filter values in float64, the
    # windowed product in float32: this is the precision the published filters
    # were computed with (matches them bit for bit).
    t = np.arange(-(taps - 1) / 2, (taps - 1) / 2 + 1, dtype=np.float32)
    window = np.hamming(taps).astype(np.float32)

    def ideal_low_pass(cutoff_hz: float) -> np.ndarray:
        arg = (np.float32(2 * cutoff_hz) * t) / np.float32(sample_rate)
        kernel: np.ndarray = np.sinc(arg).astype(np.float64)
        return (2 * cutoff_hz / sample_rate) * kernel

    out = np.zeros((n_filters, taps), dtype=np.float32)
    for i in range(n_filters):
        band = ideal_low_pass(float(edges[i + 1])) - ideal_low_pass(float(edges[i]))
        out[i] = window * band.astype(np.float32)
    return out


class SincConv(nn.Module):
    """Convolution with the fixed sinc filterbank (stride 1, no padding, no bias)."""

    filters: torch.Tensor

    def __init__(self, out_channels: int, kernel_size: int,
                 sample_rate: int = SAMPLE_RATE) -> None:
        super().__init__()
        bank = sinc_band_pass(out_channels, kernel_size, sample_rate)
        # Not persistent: computed here, absent from the published state dicts.
        self.register_buffer("filters", torch.from_numpy(bank).unsqueeze(1),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, 1, T) -> (B, out_channels, T - taps + 1)
        return F.conv1d(x, self.filters)


# --------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------

class ResidualBlock(nn.Module):
    """Two (2, 3) convolutions with a (1, 3)-conv shortcut when widths differ,
    then max-pooling of the time axis by 3."""

    def __init__(self, in_ch: int, out_ch: int, first: bool = False) -> None:
        super().__init__()
        self.first = first
        if not first:
            # Present in the checkpoints; see the module docstring (unused).
            self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, kernel_size=(2, 3), padding=(1, 1))
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, kernel_size=(2, 3), padding=(0, 1))
        self.downsample = in_ch != out_ch
        if self.downsample:
            self.conv_downsample = nn.Conv2d(in_ch, out_ch, kernel_size=(1, 3), padding=(0, 1))
        self.mp = nn.MaxPool2d((1, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = F.selu(self.bn2(out))
        out = self.conv2(out)
        shortcut = self.conv_downsample(x) if self.downsample else x
        pooled: torch.Tensor = self.mp(out + shortcut)
        return pooled


# --------------------------------------------------------------------------
# Graph layers
# --------------------------------------------------------------------------

def _att_vector(dim: int) -> nn.Parameter:
    w = torch.empty(dim, 1)
    nn.init.xavier_normal_(w)
    return nn.Parameter(w)


def _pairwise(x: torch.Tensor) -> torch.Tensor:
    """(B, N, D) -> (B, N, N, D) with entry [b, i, j] = x[b, i] * x[b, j]."""
    return x.unsqueeze(2) * x.unsqueeze(1)


def _node_bn(bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm1d over the feature axis of (B, N, D) node features."""
    n, d = x.shape[1], x.shape[2]
    normed: torch.Tensor = bn(x.reshape(-1, d))
    return normed.reshape(-1, n, d)


class GraphAttentionLayer(nn.Module):
    """Homogeneous graph attention over a fully connected graph.

    Attention logits for node pair (i, j): ``w . tanh(W (x_i * x_j) + b) / temp``,
    normalised over j; output ``SELU(BN(P1 (A x) + P2 x))``.
    """

    def __init__(self, in_dim: int, out_dim: int, temperature: float = 1.0) -> None:
        super().__init__()
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_weight = _att_vector(out_dim)
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.input_drop = nn.Dropout(p=0.2)
        self.temp = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_drop(x)
        scores = torch.matmul(torch.tanh(self.att_proj(_pairwise(x))), self.att_weight)
        att = torch.softmax(scores.squeeze(-1) / self.temp, dim=-1)  # (B, N, N)
        out = self.proj_with_att(torch.matmul(att, x)) + self.proj_without_att(x)
        return F.selu(_node_bn(self.bn, out))


class HtrgGraphAttentionLayer(nn.Module):
    """Heterogeneous graph attention over two node types plus a master node.

    Both node sets are projected to a shared space and concatenated; pairwise
    attention uses one weight vector per (type, type) block (the two cross
    blocks share ``att_weight12``). The master node attends over all nodes
    with its own projections. Returns ``(nodes_type1, nodes_type2, master)``.
    """

    def __init__(self, in_dim: int, out_dim: int, temperature: float = 1.0) -> None:
        super().__init__()
        self.proj_type1 = nn.Linear(in_dim, in_dim)
        self.proj_type2 = nn.Linear(in_dim, in_dim)
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_projM = nn.Linear(in_dim, out_dim)
        self.att_weight11 = _att_vector(out_dim)
        self.att_weight22 = _att_vector(out_dim)
        self.att_weight12 = _att_vector(out_dim)
        self.att_weightM = _att_vector(out_dim)
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.proj_with_attM = nn.Linear(in_dim, out_dim)
        self.proj_without_attM = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.input_drop = nn.Dropout(p=0.2)
        self.temp = temperature

    def _node_attention(self, x: torch.Tensor, n1: int) -> torch.Tensor:
        hidden = torch.tanh(self.att_proj(_pairwise(x)))  # (B, N, N, out)
        top = torch.cat([torch.matmul(hidden[:, :n1, :n1], self.att_weight11),
                         torch.matmul(hidden[:, :n1, n1:], self.att_weight12)], dim=2)
        bottom = torch.cat([torch.matmul(hidden[:, n1:, :n1], self.att_weight12),
                            torch.matmul(hidden[:, n1:, n1:], self.att_weight22)], dim=2)
        scores = torch.cat([top, bottom], dim=1).squeeze(-1)  # (B, N, N)
        return torch.softmax(scores / self.temp, dim=-1)

    def _update_master(self, x: torch.Tensor, master: torch.Tensor) -> torch.Tensor:
        scores = torch.matmul(torch.tanh(self.att_projM(x * master)), self.att_weightM)
        att = torch.softmax(scores / self.temp, dim=1)  # (B, N, 1): over nodes
        pooled = torch.matmul(att.transpose(1, 2), x)  # (B, 1, in)
        updated: torch.Tensor = self.proj_with_attM(pooled) + self.proj_without_attM(master)
        return updated

    def forward(self, x1: torch.Tensor, x2: torch.Tensor,
                master: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n1, n2 = x1.shape[1], x2.shape[1]
        x = torch.cat([self.proj_type1(x1), self.proj_type2(x2)], dim=1)
        if master is None:
            master = x.mean(dim=1, keepdim=True)
        x = self.input_drop(x)
        att = self._node_attention(x, n1)
        master = self._update_master(x, master)
        out = self.proj_with_att(torch.matmul(att, x)) + self.proj_without_att(x)
        out = F.selu(_node_bn(self.bn, out))
        return out[:, :n1], out[:, n1:n1 + n2], master


class GraphPool(nn.Module):
    """Score nodes with sigmoid(linear), scale them by the score and keep the
    top ``max(int(N * ratio), 1)`` in descending score order."""

    def __init__(self, ratio: float, in_dim: int, p: float = 0.3) -> None:
        super().__init__()
        self.ratio = ratio
        self.proj = nn.Linear(in_dim, 1)
        self.drop: nn.Module = nn.Dropout(p=p) if p > 0 else nn.Identity()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        n_nodes, n_feat = h.shape[1], h.shape[2]
        keep = max(int(n_nodes * self.ratio), 1)
        scores = torch.sigmoid(self.proj(self.drop(h)))  # (B, N, 1)
        _, idx = torch.topk(scores, keep, dim=1)
        return torch.gather(h * scores, 1, idx.expand(-1, -1, n_feat))


# --------------------------------------------------------------------------
# Full model
# --------------------------------------------------------------------------

class AASIST(nn.Module):
    """AASIST driven by a ``model_config`` dict (AASIST_CONFIG / AASIST_L_CONFIG).

    ``forward(waveform (B, nb_samp))`` returns ``(embedding (B, 5*gat_dims[1]),
    logits (B, 2))`` with logits ``[spoof, bona fide]``, like the original.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = copy.deepcopy(config)
        filts = config["filts"]
        gat_dims = config["gat_dims"]
        pool_ratios = config["pool_ratios"]
        temps = config["temperatures"]
        width = filts[-1][-1]

        self.conv_time = SincConv(filts[0], config["first_conv"])
        self.first_bn = nn.BatchNorm2d(1)
        block_filts = [filts[1], filts[2], filts[3], filts[4], filts[4], filts[4]]
        self.encoder = nn.Sequential(*[
            nn.Sequential(ResidualBlock(f[0], f[1], first=(i == 0)))
            for i, f in enumerate(block_filts)
        ])
        n_bins = self._frequency_bins(filts[0])
        self.pos_S = nn.Parameter(torch.randn(1, n_bins, width))
        self.master1 = nn.Parameter(torch.randn(1, 1, gat_dims[0]))
        self.master2 = nn.Parameter(torch.randn(1, 1, gat_dims[0]))

        self.GAT_layer_S = GraphAttentionLayer(width, gat_dims[0], temps[0])
        self.GAT_layer_T = GraphAttentionLayer(width, gat_dims[0], temps[1])
        self.HtrgGAT_layer_ST11 = HtrgGraphAttentionLayer(gat_dims[0], gat_dims[1], temps[2])
        self.HtrgGAT_layer_ST12 = HtrgGraphAttentionLayer(gat_dims[1], gat_dims[1], temps[2])
        self.HtrgGAT_layer_ST21 = HtrgGraphAttentionLayer(gat_dims[0], gat_dims[1], temps[2])
        self.HtrgGAT_layer_ST22 = HtrgGraphAttentionLayer(gat_dims[1], gat_dims[1], temps[2])

        self.pool_S = GraphPool(pool_ratios[0], gat_dims[0])
        self.pool_T = GraphPool(pool_ratios[1], gat_dims[0])
        self.pool_hS1 = GraphPool(pool_ratios[2], gat_dims[1])
        self.pool_hT1 = GraphPool(pool_ratios[2], gat_dims[1])
        self.pool_hS2 = GraphPool(pool_ratios[2], gat_dims[1])
        self.pool_hT2 = GraphPool(pool_ratios[2], gat_dims[1])

        self.drop_way = nn.Dropout(0.2)
        self.drop = nn.Dropout(0.5)
        self.out_layer = nn.Linear(5 * gat_dims[1], 2)

    @staticmethod
    def _frequency_bins(n_filters: int) -> int:
        """Frequency rows left after the 3x3 front pool (70 -> 23)."""
        return math.floor(n_filters / 3)

    def _branch(self, out_T: torch.Tensor, out_S: torch.Tensor, master: torch.Tensor,
                first: HtrgGraphAttentionLayer, second: HtrgGraphAttentionLayer,
                pool_S: GraphPool, pool_T: GraphPool
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t, s, m = first(out_T, out_S, master=master)
        s = pool_S(s)
        t = pool_T(t)
        t_aug, s_aug, m_aug = second(t, s, master=m)
        return t + t_aug, s + s_aug, m + m_aug

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = x.shape[0]
        x = self.conv_time(x.unsqueeze(1))  # (B, 70, T')
        x = F.max_pool2d(torch.abs(x).unsqueeze(1), (3, 3))
        x = F.selu(self.first_bn(x))
        e = torch.abs(self.encoder(x))  # (B, C, F, T)

        e_S = e.amax(dim=3).transpose(1, 2) + self.pos_S  # (B, F, C)
        out_S = self.pool_S(self.GAT_layer_S(e_S))
        e_T = e.amax(dim=2).transpose(1, 2)  # (B, T, C)
        out_T = self.pool_T(self.GAT_layer_T(e_T))

        t1, s1, m1 = self._branch(out_T, out_S, self.master1.expand(batch, -1, -1),
                                  self.HtrgGAT_layer_ST11, self.HtrgGAT_layer_ST12,
                                  self.pool_hS1, self.pool_hT1)
        t2, s2, m2 = self._branch(out_T, out_S, self.master2.expand(batch, -1, -1),
                                  self.HtrgGAT_layer_ST21, self.HtrgGAT_layer_ST22,
                                  self.pool_hS2, self.pool_hT2)
        t = torch.maximum(self.drop_way(t1), self.drop_way(t2))
        s = torch.maximum(self.drop_way(s1), self.drop_way(s2))
        m = torch.maximum(self.drop_way(m1), self.drop_way(m2))

        hidden = torch.cat([
            torch.abs(t).amax(dim=1), t.mean(dim=1),
            torch.abs(s).amax(dim=1), s.mean(dim=1),
            m.squeeze(1),
        ], dim=1)
        logits = self.out_layer(self.drop(hidden))
        return hidden, logits


class LogitsFirst(nn.Module):
    """Export wrapper: ``waveform -> (logits, embedding)`` (the ONNX contract
    wants ``logits`` as the first output)."""

    def __init__(self, model: AASIST) -> None:
        super().__init__()
        self.model = model

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, logits = self.model(waveform)
        return logits, hidden
