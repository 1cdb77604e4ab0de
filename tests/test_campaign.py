"""Campaign detection: one voice or one recorded script across many calls of a window."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from streamguard.campaign import CallSummary, CampaignDetector, CampaignPolicy
from streamguard.fingerprint import Fingerprint, Fingerprinter
from streamguard.media import StreamResampler, decode_file, pcm16_to_float, ulaw_decode, ulaw_encode
from streamguard.speaker import RunningVoiceprint, SpeakerEncoder, partial_mels, preprocess
from tests.conftest import SPEECH

pytestmark = pytest.mark.skipif(not SPEECH.exists(), reason="shared speech corpus missing")

PIPER = [f"spoof_piper/piper_{i:03d}.flac" for i in (1, 5, 9, 14, 22, 31)]


def _first_clip_per_speaker() -> list[str]:
    """One clip of each of the 10 LibriSpeech speakers (labels.csv order)."""
    if not (SPEECH / "labels.csv").exists():
        return []
    chosen: dict[str, str] = {}
    with (SPEECH / "labels.csv").open() as fh:
        for row in csv.DictReader(fh):
            if row["label"] == "bonafide":
                chosen.setdefault(row["speaker"], row["path"])
    return list(chosen.values())


GENUINE = _first_clip_per_speaker()
SCRIPT = "spoof_espeak/espeak_000.flac"


def phone(pcm: np.ndarray, gain: float = 1.0, snr_db: float = 25.0, seed: int = 0) -> np.ndarray:
    """A call's audio as it reaches us: level, noise, 8 kHz G.711 μ-law (returned at 8 kHz)."""
    rng = np.random.default_rng(seed)
    x = pcm.astype(np.float64) * gain
    x = x + rng.normal(0.0, np.sqrt(np.mean(x ** 2) / 10 ** (snr_db / 10)), len(x))
    down = StreamResampler(16000, 8000)
    pcm16 = np.clip(x, -32768, 32767).astype(np.int16)
    return ulaw_decode(ulaw_encode(np.concatenate([down.push(pcm16), down.flush()])))


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return SpeakerEncoder.load()


class Call:
    def __init__(self, encoder: SpeakerEncoder | None, rels: list[str], seed: int) -> None:
        audio = phone(np.concatenate([decode_file(SPEECH / r).pcm for r in rels]),
                      gain=0.5 + seed % 3 * 0.4, seed=seed)
        self.fingerprint: Fingerprint = Fingerprinter().fingerprint(audio, 8000)
        self.voiceprint: np.ndarray | None = None
        self.speech_seconds: float | None = None
        if encoder is not None:  # the voiceprint as a live session would build it
            up = StreamResampler(8000, 16000)
            wide = pcm16_to_float(np.concatenate([up.push(audio), up.flush()]))
            running = RunningVoiceprint()
            running.add_many(encoder.embed_partials(partial_mels(preprocess(wide))))
            self.voiceprint = running.embedding()
            self.speech_seconds = running.speech_seconds


def summary(call_id: str, t: float, call: Call, tenant: str = "bank",
            voice: np.ndarray | None = None) -> CallSummary:
    return CallSummary(call_id, tenant, t, call.voiceprint if voice is None else voice,
                       call.fingerprint, call.speech_seconds)


@pytest.fixture(scope="module")
def piper_calls(encoder: SpeakerEncoder) -> list[Call]:
    return [Call(encoder, [rel], seed=i) for i, rel in enumerate(PIPER)]


@pytest.fixture(scope="module")
def genuine_calls(encoder: SpeakerEncoder) -> list[Call]:
    return [Call(encoder, [rel], seed=i) for i, rel in enumerate(GENUINE)]


def test_same_synthetic_voice_in_six_calls_is_one_campaign(piper_calls: list[Call]) -> None:
    detector = CampaignDetector()
    alerts = []
    for i, call in enumerate(piper_calls):  # six different sentences, one TTS voice, 9 minutes
        alerts += detector.observe(summary(f"c{i}", 1000.0 + 108 * i, call))
    voice = [a for a in alerts if a.kind == "same_voice"]
    assert [a.kind for a in alerts] == ["same_voice", "same_voice"]  # no script, no replay
    first, update = voice
    assert first.is_new and first.calls == ("c0", "c1", "c2", "c3", "c4")
    assert first.new_calls == first.calls and first.first_seen == 1000.0
    assert first.last_seen == 1000.0 + 108 * 4
    assert first.similarity.measure == "cosine_to_centroid" and first.similarity.min >= 0.82
    assert not update.is_new and update.campaign_id == first.campaign_id
    assert update.new_calls == ("c5",) and update.calls == tuple(f"c{i}" for i in range(6))
    assert update.calls_in_window == 6 and update.as_dict()["kind"] == "same_voice"


def test_distinct_genuine_speakers_raise_nothing(genuine_calls: list[Call]) -> None:
    detector = CampaignDetector()
    alerts = []
    for i, call in enumerate(genuine_calls):  # ten people in five minutes
        alerts += detector.observe(summary(f"g{i}", 30.0 * i, call))
    assert alerts == []
    assert detector.calls_in_window("bank") == 10


def test_one_recorded_script_played_by_different_voices(genuine_calls: list[Call]) -> None:
    # Each call plays the same recording, then a different person talks; the voiceprint
    # is the live talker's. The fingerprint ties the calls together, the voices do not.
    detector = CampaignDetector(default=CampaignPolicy(replay_alerts=False))
    alerts = []
    for i, genuine in enumerate(genuine_calls[:6]):
        call = Call(None, [SCRIPT, GENUINE[i]], seed=10 + i)
        alerts += detector.observe(summary(f"s{i}", 60.0 * i, call, voice=genuine.voiceprint))
    assert [a.kind for a in alerts] == ["same_script", "same_script"]
    first, update = alerts
    assert first.is_new and first.calls == ("s0", "s1", "s2", "s3", "s4")
    assert first.similarity.measure == "aligned_hashes" and first.similarity.min >= 20
    assert update.new_calls == ("s5",) and update.campaign_id == first.campaign_id


def test_replay_of_an_earlier_call(genuine_calls: list[Call]) -> None:
    detector = CampaignDetector()
    assert detector.observe(summary("first", 0.0, genuine_calls[0])) == []
    again = Call(None, [GENUINE[0]], seed=7)  # the same audio, another channel
    (alert,) = detector.observe(summary("second", 120.0, again, voice=genuine_calls[1].voiceprint))
    assert alert.kind == "replay" and alert.calls == ("first", "second")
    assert alert.first_seen == 0.0 and alert.similarity.min >= 20
    # Once reported, an updated summary of the same call does not repeat it.
    assert detector.observe(summary("second", 130.0, again,
                                    voice=genuine_calls[1].voiceprint)) == []


def test_window_expiry_and_tenants(piper_calls: list[Call]) -> None:
    detector = CampaignDetector(policies={"small": CampaignPolicy(min_calls=3)})
    # Four calls, then two more 11 minutes later: never five in one window.
    times = [0.0, 60.0, 120.0, 180.0, 840.0, 900.0]
    alerts = []
    for i, (t, call) in enumerate(zip(times, piper_calls, strict=True)):
        alerts += detector.observe(summary(f"w{i}", t, call))
    assert alerts == []
    assert detector.calls_in_window("bank") == 2
    # Per-tenant rules, and tenants never pool their calls.
    alerts = []
    for i, call in enumerate(piper_calls[:4]):
        alerts += detector.observe(summary(f"a{i}", 1000.0 + i, call, tenant="other"))
        alerts += detector.observe(summary(f"b{i}", 1000.0 + i, call, tenant="small"))
    kinds = {(a.tenant, a.kind) for a in alerts}
    assert ("small", "same_voice") in kinds and all(t != "other" for t, _ in kinds)
    assert all(a.kind != "same_voice" or a.tenant == "small" for a in alerts)
    assert detector.forget("b0", "small") and not detector.forget("b0", "small")


def test_synthetic_vectors_cluster_and_short_speech_is_ignored() -> None:
    rng = np.random.default_rng(0)
    base = rng.standard_normal(256)
    base /= np.linalg.norm(base)
    detector = CampaignDetector()
    alerts = []
    for i in range(5):
        v = base + rng.standard_normal(256) * 0.02
        # Too little speech behind the voiceprint: not clustered.
        alerts += detector.observe(CallSummary(f"x{i}", "t", float(i), v, None, 1.0))
    assert alerts == []
    for i in range(5):
        v = base + rng.standard_normal(256) * 0.02
        alerts += detector.observe(CallSummary(f"y{i}", "t", 10.0 + i, v, None, 10.0))
    assert len(alerts) == 1 and alerts[0].calls == tuple(f"y{i}" for i in range(5))
    with pytest.raises(ValueError, match="256-d"):
        detector.observe(CallSummary("z", "t", 20.0, np.ones(3)))
    with pytest.raises(ValueError):
        CampaignPolicy(min_calls=1)
