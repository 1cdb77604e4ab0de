"""GE2E speaker encoder: parity with the original implementation and basic behaviour.

Reference outputs (../shared/reference/ge2e) come from resemblyzer 0.1.4 with
torch. Tolerances: mel power relative 1e-5; partial and utterance embeddings
max abs diff 1e-5 and cosine > 0.99999 (measured: 5e-7 and 1 - 1e-7).
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from streamguard.errors import ModelError
from streamguard.media import decode_file, pcm16_to_float
from streamguard.speaker import (
    CheckpointError,
    RunningVoiceprint,
    SpeakerEncoder,
    cosine,
    default_checkpoint,
    embed_speaker,
    read_state_dict,
)
from streamguard.speaker import mel as M
from streamguard.speaker.encoder import encoder_onnx_bytes

GE2E = Path(__file__).resolve().parents[2] / "shared" / "reference" / "ge2e"
pytestmark = pytest.mark.skipif(not GE2E.exists(), reason="shared GE2E reference missing")

EMB_ATOL = 1e-5


@pytest.fixture(scope="module")
def refs() -> dict[str, np.ndarray]:
    with np.load(GE2E / "ref_mels.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    return read_state_dict(default_checkpoint(), key="model_state")


@pytest.fixture(scope="module")
def encoder(state: dict[str, np.ndarray]) -> SpeakerEncoder:
    return SpeakerEncoder(state)


def load(rel: str) -> np.ndarray:
    return pcm16_to_float(decode_file(GE2E / "audio" / rel).pcm)


def test_installed_weights_are_the_reference_checkpoint(state: dict[str, np.ndarray]) -> None:
    shared = read_state_dict(GE2E / "pretrained.pt", key="model_state")
    assert set(shared) == set(state)
    for name, value in shared.items():
        np.testing.assert_array_equal(state[name], value)
    assert state["lstm.weight_ih_l0"].shape == (1024, 40)


@pytest.mark.parametrize("i", [0, 1, 2])
def test_front_end_matches_reference(refs: dict[str, np.ndarray], i: int) -> None:
    wav = load(str(refs["paths"][i]))
    normalised = M.normalize_volume(wav)
    np.testing.assert_allclose(normalised, refs[f"f{i}_wav_volume_normalized"], atol=1e-6)
    np.testing.assert_array_equal(M.vad_flags(normalised), refs[f"f{i}_vad_raw_flags_30ms"])
    np.testing.assert_array_equal(M.keep_mask(refs[f"f{i}_vad_raw_flags_30ms"]),
                                  refs[f"f{i}_vad_keep_mask_30ms"])
    pre = M.preprocess(wav)
    np.testing.assert_allclose(pre, refs[f"f{i}_wav_preprocessed"], atol=1e-6)
    parts = M.split_partials(refs[f"f{i}_wav_preprocessed"])
    np.testing.assert_array_equal(parts.starts, refs[f"f{i}_mel_slice_starts"])
    mel = M.mel_spectrogram(parts.wav)
    ref_mel = refs[f"f{i}_mel_full"]
    assert mel.shape == ref_mel.shape
    np.testing.assert_allclose(mel, ref_mel, rtol=1e-5, atol=1e-6 * float(ref_mel.max()))
    np.testing.assert_allclose(M.partial_mels(refs[f"f{i}_wav_preprocessed"]),
                               refs[f"f{i}_mels_partials"], rtol=1e-5,
                               atol=1e-6 * float(ref_mel.max()))


def test_keep_mask_rounds_half_to_even() -> None:
    # Exactly 4 voiced of 8 neighbours is 0.5, which rounds to 0: nothing survives.
    assert not M.keep_mask(np.array([0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0], bool)).any()
    # 5 of 8 is voiced; dilation then keeps ±3 windows around the voiced ones.
    kept = M.keep_mask(np.array([0] * 8 + [1] * 5 + [0] * 8, bool))
    assert kept.sum() > 5 and not kept[0] and not kept[-1]


def test_partial_counts_follow_spec() -> None:
    def count(seconds: float) -> int:
        return len(M.partial_starts(round(seconds * 16000)))
    assert [count(1.0), count(1.6), count(3.0), count(10.0)] == [1, 1, 3, 12]


@pytest.mark.parametrize("engine", ["onnx", "numpy"])
def test_network_matches_reference_partials(state: dict[str, np.ndarray],
                                            refs: dict[str, np.ndarray], engine: str) -> None:
    encoder = SpeakerEncoder(state, engine=engine)
    for i in (0, 2):  # 1 and 17 partials
        got = encoder.embed_partials(refs[f"f{i}_mels_partials"])
        want = refs[f"f{i}_partial_embeddings"]
        assert np.abs(got - want).max() < EMB_ATOL
        assert (np.sum(got * want, axis=1) > 0.99999).all()


def test_utterance_embeddings_match_reference(encoder: SpeakerEncoder) -> None:
    with np.load(GE2E / "ref_embeddings.npz") as z:
        paths, refs, n_partials = z["paths"], z["embeddings"], z["n_partials"]
    # Every other file keeps the test fast; all 40 are checked by bench/speaker.py.
    for rel, want, n in list(zip(paths, refs, n_partials, strict=True))[::2]:
        got = encoder.embed_utterance(load(str(rel)))
        assert len(got.partials) == n
        assert np.abs(got.embedding - want).max() < EMB_ATOL, rel
        assert cosine(got.embedding, want) > 0.99999


def test_onnx_graph_is_valid_onnx(state: dict[str, np.ndarray]) -> None:
    onnx = pytest.importorskip("onnx")
    model = onnx.load_from_string(encoder_onnx_bytes(state))
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node].count("LSTM") == 3


def test_same_speaker_scores_higher_than_different(encoder: SpeakerEncoder) -> None:
    a1 = encoder.embed_utterance(load("librispeech_test-other/1688/1688-142285-0000.flac"))
    a2 = encoder.embed_utterance(load("librispeech_test-other/1688/1688-142285-0001.flac"))
    b1 = encoder.embed_utterance(load("librispeech_test-other/2414/2414-128291-0000.flac"))
    same, different = cosine(a1.embedding, a2.embedding), cosine(a1.embedding, b1.embedding)
    assert same > 0.75 > different
    speaker = embed_speaker([a1, a2])
    assert cosine(speaker, a1.embedding) > same


def test_running_voiceprint_interval_narrows_and_covers(encoder: SpeakerEncoder) -> None:
    enrol = encoder.embed_utterance(load("librispeech_test-other/1688/1688-142285-0000.flac"))
    call = encoder.embed_utterance(load("librispeech_test-other/1688/1688-142285-0001.flac"))
    other = encoder.embed_utterance(load("librispeech_test-other/533/533-1066-0000.flac"))
    live = RunningVoiceprint(window_hop_s=1.232)
    live.add(call.partials[0])
    first = live.similarity(enrol.embedding)
    live.add_many(call.partials[1:])
    final = live.similarity(enrol.embedding)
    assert final.n_windows == len(call.partials) > 3
    assert final.high - final.low < first.high - first.low
    assert first.low <= final.value <= first.high
    assert final.value == pytest.approx(cosine(call.embedding, enrol.embedding), abs=1e-5)
    stranger = RunningVoiceprint(window_hop_s=1.232)
    stranger.add_many(other.partials)
    assert stranger.similarity(enrol.embedding).high < final.low
    assert live.consistency() > 0.6


def test_running_voiceprint_rejects_bad_input() -> None:
    live = RunningVoiceprint()
    with pytest.raises(ValueError):
        live.similarity(np.ones(256))
    with pytest.raises(ValueError):
        live.add(np.ones(128))
    with pytest.raises(ValueError):
        live.add(np.full(256, np.nan))


def test_encoder_input_validation(encoder: SpeakerEncoder) -> None:
    with pytest.raises(ValueError):
        encoder.embed_partials(np.zeros((1, 100, 40), np.float32))
    assert encoder.embed_partials(np.zeros((0, 160, 40), np.float32)).shape == (0, 256)
    from streamguard.errors import MediaError

    with pytest.raises(MediaError):
        encoder.embed_utterance(np.zeros((2, 16000), np.float32))
    with pytest.raises(MediaError, match="no speech"):
        encoder.embed_utterance(np.zeros(32000, np.float32))


def test_missing_weights_give_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.delenv("STREAMGUARD_GE2E_CHECKPOINT", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match=re.escape("pip install --no-deps 'resemblyzer==0.1.4'")):
        default_checkpoint()


def test_checkpoint_reader_refuses_code(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("owned",))

    path = tmp_path / "evil.pt"
    with path.open("wb") as fh:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(header, fh, protocol=2)
        pickle.dump({"x": Evil()}, fh, protocol=2)
    with pytest.raises(CheckpointError, match=r"builtin\w*\.print"):
        read_state_dict(path)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        read_state_dict(tmp_path / "empty.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((GE2E / "pretrained.pt").read_bytes()[:200_000])
    with pytest.raises(CheckpointError):
        read_state_dict(truncated, key="model_state")


def test_checkpoint_reader_reads_zip_format(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    weights = {"a": torch.arange(12, dtype=torch.float32).reshape(3, 4),
               "b": torch.arange(6, dtype=torch.int64)[::2]}  # strided view of a storage
    path = tmp_path / "new.pt"
    torch.save({"model_state": weights}, path)
    state = read_state_dict(path, key="model_state")
    np.testing.assert_array_equal(state["a"], weights["a"].numpy())
    np.testing.assert_array_equal(state["b"], [0, 2, 4])
    buffer = io.BytesIO()
    torch.save({"model_state": {"m": torch.nn.Linear(2, 2)}}, buffer)
    (tmp_path / "module.pt").write_bytes(buffer.getvalue())
    with pytest.raises(CheckpointError, match="only tensors"):
        read_state_dict(tmp_path / "module.pt")
