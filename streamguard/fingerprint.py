"""Audio fingerprints of speech: the same recording across calls, and replays.

A landmark fingerprint in the style of Wang (2003, "An Industrial-Strength
Audio Search Algorithm"), designed for telephone speech:

1. Audio is band-limited to 8 kHz (16 kHz input is decimated by 2 with a
   windowed-sinc low-pass), so wideband and G.711 calls give the same hashes.
2. STFT: 64 ms Hann frames every 16 ms; log magnitude of the 300–3400 Hz
   bins (the telephone band: what survives every phone line).
3. Peaks: bins that are the maximum of their ±3-frame × ±5-bin neighbourhood,
   stand ≥ 6 dB over their frame's median, and are within 40 dB of a slowly
   decaying running maximum (so silence and the noise floor of a quiet stretch
   give none). All three tests are relative, so a level change does not alter
   them. At most 5 per 128 ms block are kept, the strongest first, so noise
   can only replace the weakest peaks.
4. Hashes: each anchor peak is paired with the 4 strongest peaks 2–40 frames
   (32–640 ms) later and within ±800 Hz; hash = (f1, f2 − f1, Δt) packed in
   22 bits, stored with the anchor's frame index. Frequencies are quantised
   to 2 bins (31 Hz) so a harmonic that moves by one bin under noise keeps
   its hash more often.

Matching counts hashes that two fingerprints share *at a consistent time
offset* (a histogram of ``t_b − t_a`` over shared hashes, ±1 frame): random
coincidences between different speech spread over many offsets, a copy of
the same audio stacks them in one. Level changes, μ-law, additive noise and
time shifts move or remove some peaks but keep the offset peak.

What it recognises: the *same recorded audio* (a script recorded or
synthesised once and played into many calls, or a replay of an earlier
call's audio). It does not recognise the same *text* spoken again by another
voice, or re-synthesised at another speaking rate: those are different audio
with different peaks (an ASR transcript comparison would be needed for that).
**Replay, as used here, means: this call's audio matches audio already seen in
an earlier call** (query the :class:`FingerprintIndex` of recent calls before
adding the new one); matching against a library of known recordings is the
same query against an index filled with that library.

Everything is chunk-invariant: :class:`StreamingFingerprinter` fed in any
chunk sizes produces exactly the hashes of :meth:`Fingerprinter.fingerprint`
on the whole signal (the batch path *is* the streaming path fed once).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = [
    "FRAME_SECONDS",
    "Fingerprint",
    "FingerprintIndex",
    "Fingerprinter",
    "IndexMatch",
    "MatchScore",
    "StreamingFingerprinter",
    "match",
]

RATE = 8000
N_FFT = 512
HOP = 128
FRAME_SECONDS = HOP / RATE
BIN_HZ = RATE / N_FFT
LOW_BIN = round(300 / BIN_HZ)  # 19
HIGH_BIN = round(3400 / BIN_HZ)  # 218 (exclusive)
N_BINS = HIGH_BIN - LOW_BIN
PEAK_DT = 3  # frames either side a peak must dominate
PEAK_DF = 5  # bins either side
PEAK_OVER_MEDIAN_DB = 6.0
FLOOR_BELOW_MAX_DB = 40.0
RUNNING_MAX_DECAY_DB = 0.05  # per frame: 3 dB/s
BLOCK = 8  # frames per density block (128 ms)
PEAKS_PER_BLOCK = 5
FAN_OUT = 4
TARGET_MIN_DT = 2
TARGET_MAX_DT = 40
TARGET_MAX_DF = 52  # bins (~800 Hz)
FREQ_QUANT = 2
_DT_BITS = 6
_DF_BITS = 8
_DF_OFFSET = 1 << (_DF_BITS - 1)
# Decimation filter 16 kHz -> 8 kHz: 63-tap windowed sinc, cutoff 3.7 kHz.
_FIR_TAPS = 63
_ACCEPTED_RATES = (8000, 16000)


def _lowpass() -> npt.NDArray[np.float64]:
    n = np.arange(_FIR_TAPS) - (_FIR_TAPS - 1) / 2
    cutoff = 3700.0 / 16000.0  # cycles per sample
    taps = 2 * cutoff * np.sinc(2 * cutoff * n) * np.blackman(_FIR_TAPS)
    return np.asarray(taps / taps.sum(), dtype=np.float64)


_FIR = _lowpass()
_WINDOW = np.hanning(N_FFT + 2)[1:-1]  # symmetric Hann without the zero end points


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """Landmark hashes with the frame index of their anchor peak (16 ms frames).

    ``duration_s``: audio covered; ``n_peaks``: spectral peaks found (a speech
    density indicator: silence gives none).
    """

    hashes: npt.NDArray[np.uint32]
    times: npt.NDArray[np.int32]
    duration_s: float = 0.0
    n_peaks: int = 0

    def __post_init__(self) -> None:
        if self.hashes.shape != self.times.shape or self.hashes.ndim != 1:
            raise ValueError("hashes and times must be 1-d arrays of equal length")

    def __len__(self) -> int:
        return int(self.hashes.shape[0])

    @classmethod
    def empty(cls) -> Fingerprint:
        return cls(np.zeros(0, np.uint32), np.zeros(0, np.int32))

    @classmethod
    def concat(cls, parts: Iterable[Fingerprint]) -> Fingerprint:
        """Join consecutive pieces of one stream (times are already stream-absolute)."""
        items = list(parts)
        if not items:
            return cls.empty()
        return cls(np.concatenate([p.hashes for p in items]).astype(np.uint32),
                   np.concatenate([p.times for p in items]).astype(np.int32),
                   max(p.duration_s for p in items), sum(p.n_peaks for p in items))

    def window(self, start_s: float, end_s: float) -> Fingerprint:
        """The hashes anchored in [start_s, end_s) (e.g. the last minute of a call)."""
        lo, hi = start_s / FRAME_SECONDS, end_s / FRAME_SECONDS
        keep = (self.times >= lo) & (self.times < hi)
        return Fingerprint(self.hashes[keep], self.times[keep], self.duration_s, self.n_peaks)


@dataclass(frozen=True, slots=True)
class MatchScore:
    """How well two fingerprints match.

    ``aligned``: shared hashes at the best time offset (±1 frame); ``score``:
    ``aligned`` divided by the smaller fingerprint's hash count (about 0.2–0.6
    for the same audio through a phone channel, below 0.03 for different
    speech); ``offset_s``: where ``a`` starts inside ``b`` (``t_b − t_a``);
    ``common``: shared hashes at any offset.
    """

    aligned: int
    score: float
    offset_s: float
    common: int

    def is_match(self, min_aligned: int = 20, min_score: float = 0.05) -> bool:
        return self.aligned >= min_aligned and self.score >= min_score


_NO_MATCH = MatchScore(0, 0.0, 0.0, 0)


def match(a: Fingerprint, b: Fingerprint, *, tolerance_frames: int = 1,
          max_per_hash: int = 32) -> MatchScore:
    """Time-consistent hash matches between ``a`` and ``b`` (offset histogram).

    Hashes that occur more than ``max_per_hash`` times in either side carry
    little information (sustained tones, steady hum) and are skipped so one
    can not dominate the histogram or blow up the pair count.
    """
    if len(a) == 0 or len(b) == 0:
        return _NO_MATCH
    order = np.argsort(b.hashes, kind="stable")
    hb, tb = b.hashes[order], b.times[order]
    lo = np.searchsorted(hb, a.hashes, side="left")
    hi = np.searchsorted(hb, a.hashes, side="right")
    counts = hi - lo
    keep = (counts > 0) & (counts <= max_per_hash)
    if max_per_hash > 0:
        ua, inv, a_counts = np.unique(a.hashes, return_inverse=True, return_counts=True)
        del ua
        keep &= a_counts[inv] <= max_per_hash
    if not keep.any():
        return _NO_MATCH
    lo, counts, ta = lo[keep], counts[keep], a.times[keep]
    total = int(counts.sum())
    # Expand (a index, b index) pairs without a Python loop.
    starts = np.repeat(lo - np.cumsum(counts) + counts, counts)
    idx_b = starts + np.arange(total)
    offsets = tb[idx_b].astype(np.int64) - np.repeat(ta, counts).astype(np.int64)
    base = int(offsets.min())
    hist = np.bincount(offsets - base)
    width = 2 * tolerance_frames + 1
    if width > 1:
        hist = np.convolve(hist, np.ones(width, dtype=np.int64), mode="same")
    best = int(np.argmax(hist))
    aligned = int(hist[best])
    return MatchScore(aligned, aligned / min(len(a), len(b)), (best + base) * FRAME_SECONDS,
                      total)


class StreamingFingerprinter:
    """Fingerprint a live stream chunk by chunk.

    ``push(pcm)`` returns the hashes that became final with this chunk (an
    anchor is final about 0.75 s after it was heard: the target zone must be
    complete); ``flush()`` finalises the rest at the end of the stream;
    :attr:`fingerprint` is everything so far. Memory is bounded: only the
    last ~1 s of spectrum and peaks is kept, plus the hashes.
    """

    def __init__(self, rate: int = RATE) -> None:
        if rate not in _ACCEPTED_RATES:
            raise ValueError(f"fingerprints take 8000 or 16000 Hz audio, not {rate}")
        self.rate = rate
        self._fir_history = np.zeros(_FIR_TAPS - 1, dtype=np.float64)
        self._decim_phase = 0  # 16 kHz samples decimated so far
        self._samples = np.zeros(0, dtype=np.float64)  # 8 kHz samples not yet framed
        self._next_frame = 0  # index of the next STFT frame
        self._spec_start = 0  # frame index of _spec[0]
        self._spec = np.zeros((0, N_BINS), dtype=np.float32)
        self._running_max = -math.inf
        self._floor: list[float] = []  # per pending frame: running max − 40 dB
        self._next_block = 0  # next density block to pick peaks in
        self._peaks: list[tuple[int, int, float]] = []  # (t, f, magnitude dB), t sorted
        self._next_anchor = 0  # index into _peaks of the next anchor to pair
        self._peaks_offset = 0  # peaks dropped from the front of _peaks
        self._n_peaks = 0
        self._input_samples = 0
        self._finished = False
        self._parts: list[Fingerprint] = []

    # -- input -----------------------------------------------------------------------------
    def _to_8k(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if self.rate == RATE:
            return x
        joined = np.concatenate([self._fir_history, x])
        filtered = np.convolve(joined, _FIR, mode="valid")  # one per new input sample
        self._fir_history = joined[len(joined) - (_FIR_TAPS - 1):]
        # Keep the outputs at even positions of the whole 16 kHz stream.
        out = filtered[(-self._decim_phase) % 2::2]
        self._decim_phase += len(x)
        return np.asarray(out, dtype=np.float64)

    def push(self, pcm: npt.ArrayLike) -> Fingerprint:
        """Add audio (int16 PCM, or float in [-1, 1]) and return the newly final hashes."""
        if self._finished:
            raise ValueError("the stream was flushed; start a new StreamingFingerprinter")
        arr = np.asarray(pcm)
        if arr.ndim != 1:
            raise ValueError(f"expected mono audio, got shape {arr.shape}")
        x = arr.astype(np.float64) / 32768.0 if arr.dtype == np.int16 else arr.astype(np.float64)
        if not np.isfinite(x).all():
            raise ValueError("audio contains NaN or infinite samples")
        self._input_samples += len(x)
        if len(x):
            self._samples = np.concatenate([self._samples, self._to_8k(x)])
        self._frames()
        return self._advance(final=False)

    def flush(self) -> Fingerprint:
        """End of stream: finalise the remaining peaks and hashes."""
        if self._finished:
            return Fingerprint.empty()
        self._finished = True
        return self._advance(final=True)

    @property
    def fingerprint(self) -> Fingerprint:
        fp = Fingerprint.concat(self._parts)
        return Fingerprint(fp.hashes, fp.times, self._input_samples / self.rate, self._n_peaks)

    # -- spectrum --------------------------------------------------------------------------
    def _frames(self) -> None:
        n = (len(self._samples) - N_FFT) // HOP + 1 if len(self._samples) >= N_FFT else 0
        if n <= 0:
            return
        idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n)[:, None]
        frames = self._samples[idx] * _WINDOW
        mag = np.abs(np.fft.rfft(frames, axis=1))[:, LOW_BIN:HIGH_BIN]
        spec = (20.0 * np.log10(mag + 1e-9)).astype(np.float32)
        self._samples = self._samples[n * HOP:]
        self._next_frame += n
        for row in spec:  # causal running maximum of each frame's loudest bin
            top = float(row.max())
            self._running_max = max(top, self._running_max - RUNNING_MAX_DECAY_DB)
            self._floor.append(self._running_max - FLOOR_BELOW_MAX_DB)
        self._spec = np.concatenate([self._spec, spec]) if len(self._spec) else spec

    def _pick_block(self, b: int) -> None:
        """Peaks of density block ``b`` (needs PEAK_DT frames after it, or the end)."""
        t0, t1 = b * BLOCK, min((b + 1) * BLOCK, self._next_frame)
        lo, hi = max(t0 - PEAK_DT, self._spec_start), min(t1 + PEAK_DT, self._next_frame)
        s = self._spec[lo - self._spec_start:hi - self._spec_start]
        padded = np.pad(s, ((0, 0), (PEAK_DF, PEAK_DF)), constant_values=-np.inf)
        fmax = np.max(np.stack([padded[:, k:k + N_BINS] for k in range(2 * PEAK_DF + 1)]), 0)
        padded = np.pad(fmax, ((PEAK_DT, PEAK_DT), (0, 0)), constant_values=-np.inf)
        rows = len(s)
        nmax = np.max(np.stack([padded[k:k + rows] for k in range(2 * PEAK_DT + 1)]), 0)
        core = slice(t0 - lo, t1 - lo)
        block = s[core]
        median = np.median(block, axis=1, keepdims=True)
        floor = np.asarray(self._floor[t0 - self._spec_start:t1 - self._spec_start],
                           dtype=np.float32)[:, None]
        is_peak = ((block == nmax[core]) & (block >= median + PEAK_OVER_MEDIAN_DB)
                   & (block >= floor))
        tt, ff = np.nonzero(is_peak)
        if len(tt) == 0:
            return
        mags = block[tt, ff]
        order = np.lexsort((ff, tt, -mags))[:PEAKS_PER_BLOCK]  # strongest, ties by time/freq
        chosen = sorted((int(tt[i]) + t0, int(ff[i]), float(mags[i])) for i in order)
        self._peaks.extend(chosen)
        self._n_peaks += len(chosen)

    def _advance(self, final: bool) -> Fingerprint:
        # 1. Peaks in every block whose neighbourhood is complete.
        while True:
            end = (self._next_block + 1) * BLOCK
            if end + PEAK_DT <= self._next_frame or (final and self._next_block * BLOCK
                                                     < self._next_frame):
                self._pick_block(self._next_block)
                self._next_block += 1
            else:
                break
        # 2. Pair anchors whose target zone is complete.
        known_until = self._next_block * BLOCK  # peaks known for all frames < this
        hashes: list[int] = []
        times: list[int] = []
        peaks = self._peaks
        while self._next_anchor < len(peaks):
            t1, f1, _ = peaks[self._next_anchor]
            if not final and t1 + TARGET_MAX_DT >= known_until:
                break
            zone = []
            j = self._next_anchor + 1
            while j < len(peaks) and peaks[j][0] <= t1 + TARGET_MAX_DT:
                t2, f2, m2 = peaks[j]
                if t2 - t1 >= TARGET_MIN_DT and abs(f2 - f1) <= TARGET_MAX_DF:
                    zone.append((-m2, t2, f2))
                j += 1
            zone.sort()
            q1 = f1 // FREQ_QUANT
            for _, t2, f2 in zone[:FAN_OUT]:
                dq = f2 // FREQ_QUANT - q1 + _DF_OFFSET
                hashes.append((q1 << (_DF_BITS + _DT_BITS)) | (dq << _DT_BITS) | (t2 - t1))
                times.append(t1)
            self._next_anchor += 1
        self._trim()
        part = Fingerprint(np.asarray(hashes, dtype=np.uint32), np.asarray(times, np.int32),
                           self._input_samples / self.rate, self._n_peaks)
        if len(part):
            self._parts.append(part)
        return part

    def _trim(self) -> None:
        """Drop spectrum and peaks no longer needed (bounded memory on long calls)."""
        keep_from = self._next_block * BLOCK - PEAK_DT
        if keep_from > self._spec_start:
            cut = keep_from - self._spec_start
            self._spec = self._spec[cut:]
            self._floor = self._floor[cut:]
            self._spec_start = keep_from
        if self._next_anchor > 256:
            del self._peaks[:self._next_anchor]
            self._next_anchor = 0


class Fingerprinter:
    """Batch front end: ``Fingerprinter().fingerprint(pcm, rate)`` for 8 or 16 kHz audio."""

    def fingerprint(self, pcm: npt.ArrayLike, rate: int) -> Fingerprint:
        stream = StreamingFingerprinter(rate)
        stream.push(pcm)
        stream.flush()
        return stream.fingerprint

    def stream(self, rate: int) -> StreamingFingerprinter:
        return StreamingFingerprinter(rate)


@dataclass(frozen=True, slots=True)
class IndexMatch:
    """A stored call that shares time-aligned audio with the query."""

    call_id: str
    aligned: int
    score: float
    offset_s: float
    at_time: float


@dataclass(slots=True)
class _Entry:
    call_id: str
    fingerprint: Fingerprint
    at_time: float
    unique: npt.NDArray[np.uint32] = field(default_factory=lambda: np.zeros(0, np.uint32))


class FingerprintIndex:
    """In-memory inverted index (hash → calls) over recent calls' fingerprints.

    ``add(call_id, fp, at_time)`` stores or replaces a call (a live call is
    re-added as its fingerprint grows); ``query(fp)`` returns the stored calls
    that share time-aligned hashes with ``fp``, best first; ``expire(before)``
    forgets calls added before a time, and ``window_s`` does it on every add.
    Times are whatever clock the caller uses (seconds).
    """

    def __init__(self, window_s: float | None = None, *, min_aligned: int = 20,
                 min_score: float = 0.05) -> None:
        self.window_s = window_s
        self.min_aligned = min_aligned
        self.min_score = min_score
        self._entries: dict[str, _Entry] = {}
        self._postings: dict[int, set[str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._entries

    def add(self, call_id: str, fp: Fingerprint, at_time: float) -> None:
        self.remove(call_id)
        unique = np.unique(fp.hashes)
        self._entries[call_id] = _Entry(call_id, fp, at_time, unique)
        for h in unique.tolist():
            self._postings.setdefault(h, set()).add(call_id)
        if self.window_s is not None:
            self.expire(at_time - self.window_s)

    def remove(self, call_id: str) -> bool:
        entry = self._entries.pop(call_id, None)
        if entry is None:
            return False
        for h in entry.unique.tolist():
            ids = self._postings.get(h)
            if ids is not None:
                ids.discard(call_id)
                if not ids:
                    del self._postings[h]
        return True

    def expire(self, before: float) -> list[str]:
        """Forget calls added before ``before``; returns their ids."""
        old = [cid for cid, e in self._entries.items() if e.at_time < before]
        for cid in old:
            self.remove(cid)
        return old

    def query(self, fp: Fingerprint, *, limit: int = 20, exclude: str | None = None,
              min_aligned: int | None = None, min_score: float | None = None,
              ) -> list[IndexMatch]:
        """Stored calls whose audio matches ``fp``, most aligned hashes first."""
        need = self.min_aligned if min_aligned is None else min_aligned
        need_score = self.min_score if min_score is None else min_score
        hits: Counter[str] = Counter()
        for h in np.unique(fp.hashes).tolist():
            ids = self._postings.get(h)
            if ids:
                hits.update(ids)
        found: list[IndexMatch] = []
        for cid, n in hits.most_common():
            if n < need:
                break  # candidates sharing few distinct hashes cannot align many (pruning)
            if cid == exclude:
                continue
            entry = self._entries[cid]
            m = match(fp, entry.fingerprint)
            if m.aligned >= need and m.score >= need_score:
                found.append(IndexMatch(cid, m.aligned, m.score, m.offset_s, entry.at_time))
        found.sort(key=lambda x: (-x.aligned, x.call_id))
        return found[:limit]
