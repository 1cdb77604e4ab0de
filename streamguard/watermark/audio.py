"""Keyed audio watermark "sgwm1": embed in synthetic speech, detect it live.

Why this design (details and measured numbers in models/WATERMARK.md):

* **Where**: the 300–3400 Hz telephone band, so the mark survives 8 kHz
  μ-law, Opus and resampling, which all keep that band.
* **What**: time-frequency cells (16 bands × 32 ms slots) get a gain of
  ±``alpha_db``. Codecs keep short-time band *energies* (that is what they
  are built to preserve) far better than waveforms or phases, and a gain
  ratio is invariant to level changes.
* **Layout**: a block of 32 slots × 16 bands (1.024 s) repeats for the whole
  signal. Its cells are split, by a public permutation, into *sync* chips
  (a public pattern: "an sgwm1 mark is here, at this offset"), *payload*
  chips (16 bits: vendor id, key id; public, so an unknown vendor's mark can
  still be read and reported) and *keyed* chips (BLAKE2b keyed with the
  vendor's secret: without the secret they cannot be produced).
* **Detection**: log band energies minus the mean of each cell's four
  time/band neighbours (the host is smooth along both axes, the chips are
  not), scaled per band, clipped, folded modulo the block and correlated
  with the expected chips at every slot offset and sub-slot phase
  (time-shift search).

False alarms: for a ±1 chip pattern ``s`` that is random and independent of
the host, ``z = Σ s_k y_k / sqrt(Σ y_k²)`` satisfies Hoeffding's bound
``P(z >= t) <= exp(-t²/2)`` *whatever the host audio is*, because the only
randomness used is the key's. A union bound over offsets and keys sets the
thresholds (:func:`threshold_for`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from streamguard.errors import MediaError

FloatArray = npt.NDArray[np.float64]

SCHEME = "sgwm1"
BAND_LO_HZ = 300.0
BAND_HI_HZ = 3400.0
N_BANDS = 16
SLOT_SECONDS = 0.032
BLOCK_SLOTS = 32
PHASES = 4  # sub-slot time-shift search steps (8 ms)
N_SYNC = 128
N_PAYLOAD = 128
N_KEYED = BLOCK_SLOTS * N_BANDS - N_SYNC - N_PAYLOAD
PAYLOAD_BITS = 16
DEFAULT_ALPHA_DB = 3.0
EMBED_WINDOW_SECONDS = 0.016
FLOOR_POWER = 1e-11  # band power floor (≈ -110 dBFS): digital silence gives a zero residual
CLIP_SIGMAS = 2.5
SCALE_RATE = 0.03  # per-slot update of the running band scale (≈ 1 s memory)
MEAN_ABS_TO_SIGMA = math.sqrt(math.pi / 2)
MIN_SECONDS = 1.2  # one 1.024 s block plus the residual context

FALSE_ALARM_TARGET = 1e-6
PUBLIC_MIN = 4.0  # public chips must point at an offset before the keyed test counts
AUTH_MIN = 5.0  # keyed z needed: a forgery without the key passes with P <= e^-12.5
PAYLOAD_FALSE_DECODE = 1e-3


def threshold_for(comparisons: int, false_alarm: float = FALSE_ALARM_TARGET) -> float:
    """z threshold with ``comparisons * exp(-z²/2) <= false_alarm`` (Hoeffding + union)."""
    return math.sqrt(2.0 * math.log(max(comparisons, 1) / false_alarm))


def false_alarm_bound(z: float, comparisons: int) -> float:
    """Upper bound on P(max of ``comparisons`` null statistics >= z)."""
    if z <= 0:
        return 1.0
    return float(min(1.0, comparisons * math.exp(-0.5 * z * z)))


@dataclass(frozen=True, slots=True)
class WatermarkKey:
    """A vendor's key: ids travel in the public payload, ``secret`` keys the chips."""

    vendor_id: int
    key_id: int
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.vendor_id < 256 or not 0 <= self.key_id < 256:
            raise ValueError("vendor_id and key_id must be in 0..255 (8 bits each)")
        if len(self.secret) < 16:
            raise ValueError("secret must be at least 16 bytes")

    @property
    def payload(self) -> int:
        return (self.vendor_id << 8) | self.key_id


class Status(StrEnum):
    """How far a detection can be trusted; only ``verified`` is."""

    VERIFIED = "verified"  # keyed chips match a key we hold
    UNKNOWN = "unknown"  # public mark + payload read, but we hold no key for it
    INVALID = "invalid"  # claims a key we hold, keyed chips absent: forged or damaged
    PENDING = "pending"  # public mark present; payload or keyed check not conclusive (yet)


@dataclass(frozen=True, slots=True)
class Detection:
    """Result of a detection; ``false_alarm`` bounds P(this score | unmarked audio)."""

    status: Status
    vendor_id: int | None
    key_id: int | None
    score: float
    threshold: float
    false_alarm: float
    offset_seconds: float
    seconds: float
    sync_score: float
    payload_score: float | None = None

    @property
    def trusted(self) -> bool:
        return self.status is Status.VERIFIED

    def to_dict(self) -> dict[str, object]:
        return {
            "status": self.status.value, "trusted": self.trusted, "vendor_id": self.vendor_id,
            "key_id": self.key_id, "score": round(self.score, 3),
            "threshold": round(self.threshold, 3), "false_alarm": self.false_alarm,
            "offset_seconds": round(self.offset_seconds, 4), "seconds": round(self.seconds, 3),
            "sync_score": round(self.sync_score, 3),
            "payload_score": None if self.payload_score is None else round(self.payload_score, 3),
        }


# --- public layout ----------------------------------------------------------


def _public_rng(label: str) -> np.random.Generator:
    seed = int.from_bytes(hashlib.sha256(f"{SCHEME}/{label}".encode()).digest()[:16], "little")
    return np.random.default_rng(seed)


def _keyed_bits(key: bytes, label: bytes, count: int) -> npt.NDArray[np.uint8]:
    """``count`` pseudo-random bits from BLAKE2b keyed with ``key`` (a PRF)."""
    out = bytearray()
    counter = 0
    while len(out) * 8 < count:
        h = hashlib.blake2b(label + counter.to_bytes(4, "little"), key=key[:64], digest_size=64)
        out += h.digest()
        counter += 1
    return np.unpackbits(np.frombuffer(bytes(out), dtype=np.uint8))[:count]


@dataclass(frozen=True, slots=True)
class _Layout:
    sync_cells: npt.NDArray[np.int64]  # flat indices slot*N_BANDS + band
    payload_cells: npt.NDArray[np.int64]
    keyed_cells: npt.NDArray[np.int64]
    sync_chips: FloatArray
    payload_signs: FloatArray  # d_j
    payload_masks: npt.NDArray[np.int64]  # r_j: chip j = d_j * (-1)^popcount(m & r_j)


def _make_layout() -> _Layout:
    rng = _public_rng("layout")
    perm = rng.permutation(BLOCK_SLOTS * N_BANDS).astype(np.int64)
    sync = np.sort(perm[:N_SYNC])
    pay = np.sort(perm[N_SYNC:N_SYNC + N_PAYLOAD])
    keyed = np.sort(perm[N_SYNC + N_PAYLOAD:])
    chips = rng.choice([-1.0, 1.0], size=N_SYNC)
    signs = rng.choice([-1.0, 1.0], size=N_PAYLOAD)
    masks = rng.choice(np.arange(1, 1 << PAYLOAD_BITS), size=N_PAYLOAD, replace=False)
    return _Layout(sync, pay, keyed, chips, signs, masks.astype(np.int64))


LAYOUT = _make_layout()


def _popcount_parity(values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    v = values.copy()
    for shift in (8, 4, 2, 1):
        v ^= v >> shift
    return v & 1


def payload_chips(payload: int) -> FloatArray:
    """Public chips carrying a 16-bit payload (a random linear code, ML-decodable)."""
    parity = _popcount_parity(LAYOUT.payload_masks & payload)
    return LAYOUT.payload_signs * (1.0 - 2.0 * parity)


def keyed_chips(key: WatermarkKey) -> FloatArray:
    label = f"{SCHEME}/keyed/{key.vendor_id}/{key.key_id}".encode()
    bits = _keyed_bits(key.secret, label, N_KEYED)
    return 1.0 - 2.0 * bits.astype(np.float64)


def block_pattern(key: WatermarkKey) -> FloatArray:
    """The ±1 chip of every cell of one block, shape (BLOCK_SLOTS, N_BANDS)."""
    flat = np.zeros(BLOCK_SLOTS * N_BANDS)
    flat[LAYOUT.sync_cells] = LAYOUT.sync_chips
    flat[LAYOUT.payload_cells] = payload_chips(key.payload)
    flat[LAYOUT.keyed_cells] = keyed_chips(key)
    return flat.reshape(BLOCK_SLOTS, N_BANDS)


# --- embedding --------------------------------------------------------------


def _as_float(pcm: npt.NDArray[np.generic]) -> FloatArray:
    arr = np.asarray(pcm)
    if arr.ndim != 1:
        raise MediaError("watermarking needs mono audio (a 1-D array)")
    if arr.dtype == np.int16:
        return arr.astype(np.float64) / 32768.0
    if not np.issubdtype(arr.dtype, np.floating):
        raise MediaError(f"unsupported sample type {arr.dtype}; use int16 or float")
    return arr.astype(np.float64)


def _check_rate(rate: int) -> None:
    if not 8000 <= rate <= 192000:
        raise MediaError(f"unsupported sample rate {rate} Hz (8 kHz .. 192 kHz)")


def embed(pcm: npt.NDArray[np.generic], rate: int, key: WatermarkKey,
          alpha_db: float = DEFAULT_ALPHA_DB) -> npt.NDArray[np.float32]:
    """Return ``pcm`` (float in [-1, 1] or int16) with the key's mark, as float32.

    Each STFT frame (16 ms, hop 4 ms) gets the gain of the cell its centre
    falls in; overlap-add smooths the gain steps so they do not click.
    """
    _check_rate(rate)
    x = _as_float(pcm)
    win = 2 * round(EMBED_WINDOW_SECONDS * rate / 2)
    hop = win // 4
    slot = SLOT_SECONDS * rate
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    pattern = block_pattern(key)
    window = np.hanning(win + 1)[:win]
    padded = np.concatenate([np.zeros(win), x, np.zeros(win + hop)])
    starts = np.arange(0, len(padded) - win + 1, hop)
    frames = padded[starts[:, None] + np.arange(win)] * window
    spec = np.fft.rfft(frames, axis=1)
    freqs = np.fft.rfftfreq(win, 1.0 / rate)
    band = np.floor((freqs - BAND_LO_HZ) / (BAND_HI_HZ - BAND_LO_HZ) * N_BANDS).astype(int)
    inband = (freqs >= BAND_LO_HZ) & (freqs < BAND_HI_HZ)
    centre = starts - win + win / 2.0  # frame centre in samples of the original signal
    slot_index = np.floor(np.maximum(centre, 0.0) / slot).astype(np.int64) % BLOCK_SLOTS
    chips = pattern[slot_index][:, np.clip(band, 0, N_BANDS - 1)]  # (frames, bins)
    gains = np.where(inband[None, :], 10.0 ** (alpha_db * chips / 20.0), 1.0)
    out_frames = np.fft.irfft(spec * gains, n=win, axis=1) * window
    out = _overlap_add(out_frames, hop, len(padded))
    norm = _overlap_add(np.broadcast_to(window * window, out_frames.shape), hop, len(padded))
    body = slice(win, win + n)
    result = out[body] / np.maximum(norm[body], 1e-9)
    return result.astype(np.float32)


def _overlap_add(frames: FloatArray, hop: int, length: int) -> FloatArray:
    """Sum frames placed every ``hop`` samples; frames that are win/hop apart never overlap."""
    win = frames.shape[1]
    out = np.zeros(length + win)
    step = win // hop
    for first in range(step):
        group = frames[first::step]
        begin = first * hop
        flat = group.reshape(-1)
        out[begin:begin + len(flat)] += flat
    return out[:length]


# --- detection features -----------------------------------------------------


@dataclass(slots=True)
class _FeatureState:
    """Band log-energies per sub-slot phase; shared by batch and streaming detection."""

    rate: int
    frame: int = 0
    hop: int = 0
    window: FloatArray = field(default_factory=lambda: np.zeros(0))
    band_matrix: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))

    def __post_init__(self) -> None:
        _check_rate(self.rate)
        self.frame = round(SLOT_SECONDS * self.rate)
        self.hop = self.frame // PHASES
        if self.hop * PHASES != self.frame:
            raise MediaError(f"sample rate {self.rate} Hz does not split 32 ms slots into "
                             f"{PHASES} phases; resample to 8 or 16 kHz first")
        self.window = np.hanning(self.frame + 1)[: self.frame]
        freqs = np.fft.rfftfreq(self.frame, 1.0 / self.rate)
        edges = np.linspace(BAND_LO_HZ, BAND_HI_HZ, N_BANDS + 1)
        m = np.zeros((len(freqs), N_BANDS))
        for b in range(N_BANDS):
            m[(freqs >= edges[b]) & (freqs < edges[b + 1]), b] = 1.0
        self.band_matrix = m

    def log_energies(self, x: FloatArray) -> FloatArray:
        """dB band energies of frames starting every ``hop`` samples, shape (frames, bands)."""
        count = (len(x) - self.frame) // self.hop + 1
        if count <= 0:
            return np.zeros((0, N_BANDS))
        idx = np.arange(count)[:, None] * self.hop + np.arange(self.frame)
        spec = np.fft.rfft(x[idx] * self.window, axis=1)
        power = (spec.real ** 2 + spec.imag ** 2) @ self.band_matrix
        return np.asarray(10.0 * np.log10(power + FLOOR_POWER * self.frame))




def _cell_index(cells: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """For every slot offset n0, where each block cell sits in a folded grid: (K, cells)."""
    k, b = np.divmod(cells, N_BANDS)
    shifts = np.arange(BLOCK_SLOTS)[:, None]
    return np.asarray(((k[None, :] + shifts) % BLOCK_SLOTS) * N_BANDS + b[None, :])


_SYNC_INDEX = _cell_index(LAYOUT.sync_cells)
_PAYLOAD_INDEX = _cell_index(LAYOUT.payload_cells)
_KEYED_INDEX = _cell_index(LAYOUT.keyed_cells)
_PUBLIC_INDEX = np.concatenate([_SYNC_INDEX, _PAYLOAD_INDEX], axis=1)


def correlate(folded: FloatArray, index: npt.NDArray[np.int64], chips: FloatArray) -> FloatArray:
    """z statistic per (phase, offset) of ``chips`` against a folded grid (P, K, B)."""
    grid = folded.reshape(folded.shape[0], -1)[:, index]  # (P, K, cells)
    num = grid @ chips
    den = np.sqrt(np.einsum("pkc,pkc->pk", grid, grid))
    return np.asarray(np.where(den > 0, num / np.maximum(den, 1e-300), 0.0))


def _fwht(values: FloatArray) -> FloatArray:
    """Walsh-Hadamard transform: out[m] = Σ_r values[r] · (-1)^popcount(m & r)."""
    a = values.copy()
    h = 1
    n = len(a)
    while h < n:
        a = a.reshape(-1, 2, h)
        a = np.stack((a[:, 0] + a[:, 1], a[:, 0] - a[:, 1]), axis=1)
        h *= 2
    return np.asarray(a.reshape(n))


def decode_payload(payload_values: FloatArray) -> tuple[int, float]:
    """Maximum-likelihood 16-bit payload from folded payload cells, and its z score."""
    hist = np.zeros(1 << PAYLOAD_BITS)
    np.add.at(hist, LAYOUT.payload_masks, LAYOUT.payload_signs * payload_values)
    scores = _fwht(hist)
    best = int(np.argmax(scores))
    norm = math.sqrt(float(payload_values @ payload_values))
    return best, float(scores[best] / norm) if norm > 0 else 0.0


OFFSETS = PHASES * BLOCK_SLOTS  # time-shift hypotheses searched per evaluation


class WatermarkDetector:
    """Streaming sans-I/O detector: feed PCM chunks, get a :class:`Detection` when one appears.

    Band energies are computed as audio arrives; per-slot residuals are folded
    into one accumulator per block, and every ``eval_every`` seconds the last
    ``window_seconds`` are tested (each such test is one "window" of the
    false-alarm budget). ``window_seconds=None`` keeps everything (files).
    """

    def __init__(self, keys: Sequence[WatermarkKey] = (), rate: int = 16000, *,
                 window_seconds: float | None = 8.0, eval_every: float = 0.5,
                 false_alarm: float = FALSE_ALARM_TARGET) -> None:
        self.keys = list(keys)
        self.rate = rate
        self._features = _FeatureState(rate)
        self._chips = [keyed_chips(k) for k in self.keys]
        self._by_ids = {(k.vendor_id, k.key_id): i for i, k in enumerate(self.keys)}
        self._public = [np.concatenate([LAYOUT.sync_chips, payload_chips(k.payload)])
                        for k in self.keys]
        # Verified = the key's public chips pick an offset (z >= PUBLIC_MIN) AND the keyed
        # chips at that offset reach key_threshold. Both are null-bounded and use disjoint
        # cells, so P(false verify) <= keys * OFFSETS * e^(-PUBLIC_MIN²/2) * e^(-t²/2);
        # t is at least AUTH_MIN, which alone bounds a public-only forgery.
        budget = false_alarm / false_alarm_bound(PUBLIC_MIN, OFFSETS * max(len(self.keys), 1))
        self.key_threshold = max(AUTH_MIN, threshold_for(1, min(budget, 1.0)))
        self.sync_threshold = threshold_for(OFFSETS, false_alarm)
        self.payload_threshold = threshold_for(1 << PAYLOAD_BITS, PAYLOAD_FALSE_DECODE)
        slot_seconds = self._features.frame / rate
        self._window_blocks = (None if window_seconds is None else
                               max(2, math.ceil(window_seconds / (slot_seconds * BLOCK_SLOTS))))
        self._eval_hop = max(1, round(eval_every * rate))
        self._pending = np.zeros(0)
        # Features are computed in batches of ~0.25 s: numpy overhead per call dominates
        # at 20 ms chunks, and nothing is evaluated between batches anyway.
        self._inbox: list[FloatArray] = []
        self._inbox_len = 0
        self._ingest_hop = min(self._eval_hop, round(0.25 * rate))
        self._next_frame = 0  # absolute index of the next analysis frame
        self._consumed = 0  # samples dropped from the front of _pending
        self._tail: list[FloatArray] = [np.zeros((0, N_BANDS)) for _ in range(PHASES)]
        self._scale: list[FloatArray | None] = [None] * PHASES
        self._blocks: dict[int, FloatArray] = {}
        self._rows: dict[int, int] = {}
        self._samples = 0
        self._since_eval = 0
        self.latest: Detection | None = None
        self._reported: Status | None = None

    @property
    def seconds(self) -> float:
        return self._samples / self.rate

    def push(self, pcm: npt.NDArray[np.generic]) -> Detection | None:
        """Feed mono samples (int16 or float); returns a detection when its status changes."""
        x = _as_float(pcm)
        self._samples += len(x)
        self._since_eval += len(x)
        self._inbox.append(x)
        self._inbox_len += len(x)
        if self._inbox_len >= self._ingest_hop or self._since_eval >= self._eval_hop:
            self._ingest(np.concatenate(self._inbox))
            self._inbox, self._inbox_len = [], 0
        if self._since_eval < self._eval_hop:
            return None
        self._since_eval = 0
        return self._report(self.evaluate())

    def _report(self, detection: Detection | None) -> Detection | None:
        self.latest = detection
        if detection is None or detection.status is self._reported:
            return None
        self._reported = detection.status
        return detection

    def _ingest(self, x: FloatArray) -> None:
        fs = self._features
        self._pending = np.concatenate([self._pending, x])
        start = self._next_frame * fs.hop - self._consumed
        levels = fs.log_energies(self._pending[start:])
        if len(levels) == 0:
            return
        first = self._next_frame
        self._next_frame += len(levels)
        drop = self._next_frame * fs.hop - self._consumed
        self._pending = self._pending[drop:]
        self._consumed += drop
        for p in range(PHASES):
            # frame f = slot*PHASES + phase; rows of this phase among the new frames
            offset = (p - first) % PHASES
            rows = levels[offset::PHASES]
            if len(rows) == 0:
                continue
            first_slot = (first + offset) // PHASES
            self._fold_phase(p, rows, first_slot)

    def _fold_phase(self, p: int, rows: FloatArray, first_slot: int) -> None:
        seq = np.concatenate([self._tail[p], rows])
        self._tail[p] = seq[-2:]
        if len(seq) < 3:
            return
        # Each cell minus the mean of its four time/band neighbours: speech energy is
        # smooth along both axes, the chips are independent of their neighbours.
        centre = seq[1:-1]
        sides = np.pad(centre, ((0, 0), (1, 1)), mode="edge")
        r = centre - 0.25 * (seq[:-2] + seq[2:] + sides[:, :-2] + sides[:, 2:])
        r = r - r.mean(axis=1, keepdims=True)
        r = self._normalise(p, r)
        # residual i belongs to the slot of seq[i + 1]
        last_slot = first_slot + len(rows) - 1
        slots = np.arange(last_slot - len(r), last_slot) + 0
        for q in np.unique(slots // BLOCK_SLOTS):
            sel = slots // BLOCK_SLOTS == q
            block = self._blocks.get(int(q))
            if block is None:
                block = self._blocks[int(q)] = np.zeros((PHASES, BLOCK_SLOTS, N_BANDS))
            np.add.at(block[p], slots[sel] % BLOCK_SLOTS, r[sel])
            if p == 0:
                self._rows[int(q)] = self._rows.get(int(q), 0) + int(sel.sum())
        if self._window_blocks is not None:
            newest = max(self._blocks)
            for q in [q for q in self._blocks if q <= newest - self._window_blocks]:
                del self._blocks[q]
                self._rows.pop(q, None)

    def _normalise(self, p: int, r: FloatArray) -> FloatArray:
        """Residuals in units of a running per-band scale, clipped at ``CLIP_SIGMAS``.

        Low bands swing more with speech than high ones; equal-variance cells make
        the correlation closer to a matched filter. The scale is derived from the
        host audio only, so the null bound still holds.
        """
        start = self._scale[p]
        if start is None:
            start = np.full(N_BANDS, 1.4826 * float(np.median(np.abs(r[0]))))
        # scale_i = (1-a)·scale_(i-1) + a·c·|r_i|, unrolled over the batch as one product
        lag = np.arange(len(r))[:, None] - np.arange(len(r))[None, :]
        decay = np.where(lag >= 0, SCALE_RATE * (1.0 - SCALE_RATE) ** np.maximum(lag, 0), 0.0)
        carry = (1.0 - SCALE_RATE) ** np.arange(1, len(r) + 1)
        scale = carry[:, None] * start + decay @ (MEAN_ABS_TO_SIGMA * np.abs(r))
        self._scale[p] = scale[-1]
        return np.clip(r / np.maximum(scale, 1e-9), -CLIP_SIGMAS, CLIP_SIGMAS)

    def analysed_seconds(self) -> float:
        """Audio inside the current test window (phase-0 residual slots)."""
        return sum(self._rows.values()) * SLOT_SECONDS

    def window_grid(self) -> FloatArray | None:
        """Folded residuals of the current window, (phases, slots, bands); for benches."""
        if not self._blocks or self.analysed_seconds() < BLOCK_SLOTS * SLOT_SECONDS:
            return None
        return np.asarray(np.sum(list(self._blocks.values()), axis=0))

    def evaluate(self) -> Detection | None:
        """Test the current window now; ``None`` means no mark (or not enough audio yet)."""
        folded = self.window_grid()
        if folded is None:
            return None
        seconds = self.analysed_seconds()
        sync = correlate(folded, _SYNC_INDEX, LAYOUT.sync_chips)
        keys = max(len(self.keys), 1)
        for i, key in enumerate(self.keys):
            public = correlate(folded, _PUBLIC_INDEX, self._public[i])
            at = np.unravel_index(int(np.argmax(public)), public.shape)
            p, n0 = int(at[0]), int(at[1])
            z_pub = float(public[p, n0])
            if z_pub < PUBLIC_MIN:
                continue
            keyed = folded[p].reshape(-1)[_KEYED_INDEX[n0]]
            z_key = float(keyed @ self._chips[i]) / (math.sqrt(float(keyed @ keyed)) or 1.0)
            fa = false_alarm_bound(z_pub, OFFSETS * keys) * false_alarm_bound(z_key, 1)
            if z_key >= self.key_threshold:
                return Detection(Status.VERIFIED, key.vendor_id, key.key_id, z_key,
                                 self.key_threshold, fa, self._offset(p, n0), seconds,
                                 float(sync[p, n0]), z_pub)
        at = np.unravel_index(int(np.argmax(sync)), sync.shape)
        p, n0 = int(at[0]), int(at[1])
        z_sync = float(sync[p, n0])
        if z_sync < self.sync_threshold:
            return None
        fa = false_alarm_bound(z_sync, OFFSETS)
        payload, z_pay = decode_payload(folded[p].reshape(-1)[_PAYLOAD_INDEX[n0]])
        vendor, key_id = divmod(payload, 256)
        if z_pay < self.payload_threshold:
            return Detection(Status.PENDING, None, None, z_sync, self.sync_threshold, fa,
                             self._offset(p, n0), seconds, z_sync, z_pay)
        held = self._by_ids.get((vendor, key_id))
        if held is None:
            return Detection(Status.UNKNOWN, vendor, key_id, z_sync, self.sync_threshold, fa,
                             self._offset(p, n0), seconds, z_sync, z_pay)
        keyed = folded[p].reshape(-1)[_KEYED_INDEX[n0]]
        norm = math.sqrt(float(keyed @ keyed)) or 1.0
        z_keyed = float(keyed @ self._chips[held]) / norm
        # A genuine mark whose public part is this strong has keyed z ≈ sqrt(2)·z_sync.
        status = Status.INVALID if z_keyed < INVALID_BELOW else Status.PENDING
        return Detection(status, vendor, key_id, z_keyed, self.key_threshold, fa,
                         self._offset(p, n0), seconds, z_sync, z_pay)

    def _offset(self, phase: int, n0: int) -> float:
        fs = self._features
        return (n0 * fs.frame + phase * fs.hop) / self.rate


INVALID_BELOW = 2.0  # keyed z of a genuine mark is ≈ its public z; 2.0 is far below


def _resample_for_detection(x: FloatArray, rate: int) -> tuple[FloatArray, int]:
    """Rates that do not split a 32 ms slot into whole phases go to 16 kHz first."""
    frame = round(SLOT_SECONDS * rate)
    if abs(frame - SLOT_SECONDS * rate) < 1e-9 and frame % PHASES == 0:
        return x, rate
    from streamguard.media.pcm import float_to_pcm16
    from streamguard.media.resample import StreamResampler

    resampler = StreamResampler(rate, 16000)
    pcm = float_to_pcm16(x)
    out = np.concatenate([resampler.push(pcm), resampler.flush()])
    return out.astype(np.float64) / 32768.0, 16000


def detect(pcm: npt.NDArray[np.generic], rate: int, keys: Sequence[WatermarkKey] = (), *,
           false_alarm: float = FALSE_ALARM_TARGET) -> Detection | None:
    """Test a whole recording once; raises :class:`MediaError` when it is too short."""
    _check_rate(rate)
    x = _as_float(pcm)
    if len(x) < MIN_SECONDS * rate:
        raise MediaError(f"audio too short for a watermark test ({len(x) / rate:.2f} s; "
                         f"at least {MIN_SECONDS:.1f} s is needed)")
    x, rate = _resample_for_detection(x, rate)
    detector = WatermarkDetector(keys, rate, window_seconds=None, false_alarm=false_alarm)
    detector._ingest(x)
    detector._samples = len(x)
    return detector.evaluate()
