import numpy as np
import pytest

from streamguard.vad import FRAME_SAMPLES, SpeechGate
from streamguard.windows import SlidingWindower, WindowSpec

from .conftest import voiced


def feed(windower, gate, pcm, chunk):
    out = []
    for i in range(0, len(pcm), chunk):
        frames, flags = gate.push(pcm[i:i + chunk])
        out += windower.push(frames, flags)
    return out


def test_first_window_early_then_every_hop_at_model_length():
    spec = WindowSpec()
    windows = feed(SlidingWindower("s", spec), SpeechGate(), voiced(8.0, 0.3), 160)
    ends = [round(w.end, 3) for w in windows]
    assert ends == [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    assert [len(w.samples) for w in windows[:4]] == [32000, 48000, 64000, 64600]
    assert windows[3].start == pytest.approx(5.0 - 64600 / 16000)
    assert all(w.speech_ratio > 0.9 for w in windows)
    assert [w.index for w in windows] == list(range(7))


def test_chunk_size_does_not_change_the_windows():
    pcm = voiced(6.5, 0.3)
    small = feed(SlidingWindower("s", WindowSpec()), SpeechGate(), pcm, 160)
    large = feed(SlidingWindower("s", WindowSpec()), SpeechGate(), pcm, 48000)
    assert [w.end for w in small] == [w.end for w in large]
    for a, b in zip(small, large, strict=True):
        assert np.array_equal(a.samples, b.samples)


def test_silence_is_not_scored_and_speech_after_it_is_within_budget():
    pcm = np.concatenate([np.zeros(16000 * 6, dtype=np.int16), voiced(4.0, 0.3)])
    windower = SlidingWindower("s", WindowSpec())
    windows = feed(windower, SpeechGate(), pcm, 320)
    assert windower.skipped >= 4
    first = windows[0]
    assert first.end - 6.0 <= 2.5  # first verdict within 2.5 s of speech
    assert first.speech_ratio >= 0.35


def test_flush_scores_an_uncovered_tail_and_short_streams():
    windower = SlidingWindower("s", WindowSpec())
    gate = SpeechGate()
    assert feed(windower, gate, voiced(1.5, 0.3), 320) == []
    tail = windower.flush()
    assert len(tail) == 1 and tail[0].end == pytest.approx(1.5, abs=0.02)
    too_short = SlidingWindower("s", WindowSpec())
    feed(too_short, SpeechGate(), voiced(0.5, 0.3), 320)
    assert too_short.flush() == []


def test_origin_shifts_window_times():
    windows = feed(SlidingWindower("s", WindowSpec(), origin=100.0), SpeechGate(),
                   voiced(2.0, 0.3), 320)
    assert windows[0].start == 100.0 and windows[0].end == 102.0


def test_spec_validation():
    with pytest.raises(ValueError):
        WindowSpec(hop=0)
    with pytest.raises(ValueError):
        WindowSpec(first_after=70000)


def test_gate_keeps_partial_frames_and_pads_at_flush():
    gate = SpeechGate()
    frames, flags = gate.push(voiced(0.05, 0.3))
    assert len(frames) == 2 * FRAME_SAMPLES and len(flags) == 2
    assert gate.pending_samples == 0.05 * 16000 - 2 * FRAME_SAMPLES
    frames, flags = gate.flush()
    assert len(frames) == FRAME_SAMPLES and len(flags) == 1
    with pytest.raises(ValueError):
        SpeechGate(5)
