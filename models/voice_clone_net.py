"""The shipped voice-clone detector: log-spectrogram front end + small 2-D CNN.

Everything from raw samples to logits is one torch module, so the exported
ONNX graph follows the contract in models/README.md with no preprocessing
outside it:

    waveform (B, 64600) float32, 16 kHz, [-1, 1]
      -> STFT as a strided Conv1d with fixed Hann-windowed DFT kernels
         (n_fft 512 = 32 ms, hop 256 = 16 ms; bins 1..256 = 31 Hz .. 8 kHz,
         linear frequency, so the 4-8 kHz band where vocoder artefacts live
         keeps full resolution)
      -> power / mean power of the window (per-window level normalisation: a
         gain change is a no-op), log with a floor 50 dB below the mean, so
         digital silence and a quiet noise floor look alike
      -> 4 strided residual conv stages (16-24-32-48-64 channels)
      -> mean and standard deviation over time, frequency axis kept
      -> dropout -> linear -> logits (B, 2): index 0 spoof, index 1 bona fide

The DFT is a plain Conv1d (not torch.stft) so the graph uses only Conv /
Mul / Add / ReduceMean / Log, which every ONNX Runtime build runs, and the
exported numbers match torch to ~1e-5.
"""

from __future__ import annotations

import math

import torch
from torch import nn

SAMPLE_RATE = 16000
INPUT_SAMPLES = 64600
N_FFT = 512
HOP = 256
N_BINS = N_FFT // 2  # bins 1..256; the DC bin is dropped
LOG_FLOOR = 1e-5  # relative to the window's mean bin power (-50 dB)


class LogSpectrogram(nn.Module):
    """(B, N) waveform -> (B, 1, 256, T) level-normalised log power spectrogram."""

    def __init__(self, n_fft: int = N_FFT, hop: int = HOP) -> None:
        super().__init__()
        self.hop = hop
        n = torch.arange(n_fft, dtype=torch.float64)
        k = torch.arange(1, n_fft // 2 + 1, dtype=torch.float64)
        window = 0.5 - 0.5 * torch.cos(2 * math.pi * n / n_fft)  # periodic Hann
        phase = 2 * math.pi * k[:, None] * n[None, :] / n_fft
        real = torch.cos(phase) * window
        imag = -torch.sin(phase) * window
        kernel = torch.cat([real, imag], dim=0)[:, None, :] / math.sqrt(n_fft)
        self.register_buffer("kernel", kernel.float(), persistent=True)
        self.n_bins = n_fft // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = nn.functional.conv1d(x[:, None, :], self.kernel, stride=self.hop)
        real, imag = spec[:, : self.n_bins], spec[:, self.n_bins :]
        power = real * real + imag * imag
        mean = power.mean(dim=(1, 2), keepdim=True)
        rel = power / (mean + 1e-10)
        return torch.log(rel + LOG_FLOOR)[:, None]


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
        )
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.act(y + self.short(x))


class TimeBranch(nn.Module):
    """(B, N) waveform -> (B, 128) embedding of 1 ms sub-band envelopes.

    The 16 ms spectrogram frames cannot show what happens inside a pitch
    period; magnitude-only resynthesis (Griffin-Lim) smears the glottal pulses
    there while leaving the frame magnitudes as they were. A learnable 64-tap
    FIR filterbank (32 bands, log-spaced 60 Hz-7.6 kHz cosines at init, stride
    4) -> squared -> averaged over 4 (1 ms hop) -> log, level-normalised per
    window -> 4 strided Conv1d blocks -> mean and std over time.
    """

    def __init__(self, bands: int = 32, widths: tuple[int, ...] = (32, 48, 64, 64)) -> None:
        super().__init__()
        n = torch.arange(64, dtype=torch.float32)
        centre = torch.logspace(math.log10(60.0), math.log10(7600.0), bands) / SAMPLE_RATE
        window = torch.hann_window(64, periodic=False)
        self.fir = nn.Parameter(
            (torch.cos(2 * math.pi * centre[:, None] * n[None]) * window)[:, None, :] / 8)
        self.norm = nn.BatchNorm1d(bands)
        layers: list[nn.Module] = []
        cin = bands
        for cout in widths:
            layers += [nn.Conv1d(cin, cout, 5, stride=2, padding=2, bias=False),
                       nn.BatchNorm1d(cout), nn.ReLU()]
            cin = cout
        self.net = nn.Sequential(*layers)
        self.out_dim = 2 * cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.conv1d(x[:, None], self.fir, stride=4)
        power = nn.functional.avg_pool1d(y * y, 4)
        rel = power / (power.mean(dim=(1, 2), keepdim=True) + 1e-10)
        h = self.net(self.norm(torch.log(rel + LOG_FLOOR)))
        mean = h.mean(dim=2)
        std = torch.sqrt(((h - mean[..., None]) ** 2).mean(dim=2) + 1e-5)
        return torch.cat([mean, std], dim=1)


class VoiceCloneNet(nn.Module):
    """Raw 16 kHz waveform in, (spoof, bona fide) logits out.

    ``time_branch`` adds a TimeBranch beside the spectrogram CNN (its embedding
    is concatenated before the head). vc-cnn-1.0.0 has none; the leave-one-
    family-out runs that measure it are in the model card."""

    def __init__(self, widths: tuple[int, ...] = (16, 24, 32, 48, 64),
                 dropout: float = 0.3, time_branch: bool = False) -> None:
        super().__init__()
        self.widths = widths
        self.front = LogSpectrogram()
        self.time = TimeBranch() if time_branch else None
        # Learned affine on the log spectrum (≈ fixed normalisation, trainable).
        self.in_norm = nn.BatchNorm2d(1)
        self.stem = nn.Sequential(
            nn.Conv2d(1, widths[0], 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        blocks = [ResBlock(widths[i], widths[i + 1], 2) for i in range(len(widths) - 1)]
        self.blocks = nn.Sequential(*blocks)
        freq = N_BINS
        for _ in range(len(widths)):
            freq = (freq - 1) // 2 + 1
        self.dropout = nn.Dropout(dropout)
        extra = self.time.out_dim if self.time is not None else 0
        self.head = nn.Linear(2 * widths[-1] * freq + extra, 2)

    def spec_augment(self, s: torch.Tensor) -> torch.Tensor:
        """Training only: mask 1-2 random frequency bands (≤ 24 bins) and time spans."""
        b, _, f, t = s.shape
        keep = torch.ones_like(s)
        for _ in range(2):
            width = torch.randint(0, 25, (b,))
            start = (torch.rand(b) * (f - width)).long()
            bins = torch.arange(f)[None, :]
            band = (bins >= start[:, None]) & (bins < (start + width)[:, None])
            apply = (torch.rand(b) < 0.5)[:, None]
            keep = keep * (~(band & apply)).float()[:, None, :, None]
            width = torch.randint(0, 20, (b,))
            start = (torch.rand(b) * (t - width)).long()
            frames = torch.arange(t)[None, :]
            span = (frames >= start[:, None]) & (frames < (start + width)[:, None])
            apply = (torch.rand(b) < 0.3)[:, None]
            keep = keep * (~(span & apply)).float()[:, None, None, :]
        return s * keep

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        s = self.in_norm(self.front(x))
        if self.training:
            s = self.spec_augment(s)
        h = self.blocks(self.stem(s))  # (B, C, F, T)
        mean = h.mean(dim=3)
        std = torch.sqrt(((h - mean[..., None]) ** 2).mean(dim=3) + 1e-5)
        spectral = torch.cat([mean, std], dim=1).flatten(1)
        if self.time is None:
            return spectral
        return torch.cat([spectral, self.time(x)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(x)))


class SeedEnsemble(nn.Module):
    """VoiceCloneNets trained alike but for the seed, exported as one graph.

    Why: with one model, a held-out generator family's EER moves with the
    training seed alone by up to 11 points (held-out channel vocoder: 5.3 to
    16.7 %), so which families a release catches would be a draw. Each
    member's spoof margin becomes a z-score against its own genuine
    calibration windows (``centre``, ``scale``; members differ in scale, and a
    raw mean would let the widest decide), and the mean z-score is the
    ensemble's margin. The logits follow the contract: (z / 2, -z / 2), so
    logit0 - logit1 is that mean."""

    def __init__(self, members: list[VoiceCloneNet], centre: list[float],
                 scale: list[float]) -> None:
        super().__init__()
        if not len(members) == len(centre) == len(scale) or not members:
            raise ValueError("one centre and one scale per member, and at least one member")
        self.members = nn.ModuleList(members)
        self.register_buffer("centre", torch.tensor(centre, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = [member(x) for member in self.members]
        margin = torch.stack([lg[:, 0] - lg[:, 1] for lg in logits], dim=1)
        z = ((margin - self.centre) / self.scale).mean(dim=1)
        return torch.stack([z / 2, -z / 2], dim=1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
