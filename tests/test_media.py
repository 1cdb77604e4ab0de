import warnings
from pathlib import Path

import av
import numpy as np
import pytest

from streamguard import AudioChunk, MediaError
from streamguard.media import (
    StreamResampler,
    alaw_decode,
    alaw_encode,
    decode_file,
    pcm16_from_bytes,
    ulaw_decode,
    ulaw_encode,
)

from .conftest import SPEECH, voiced

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # the stdlib's G.711, a reference until Python 3.13

ALL_PCM = np.arange(-32768, 32768, dtype=np.int16)


def test_ulaw_matches_reference_codec_for_every_sample():
    assert ulaw_encode(ALL_PCM) == audioop.lin2ulaw(ALL_PCM.tobytes(), 2)
    every_byte = bytes(range(256))
    assert ulaw_decode(every_byte).tobytes() == audioop.ulaw2lin(every_byte, 2)


def test_alaw_matches_reference_codec_for_every_sample():
    assert alaw_encode(ALL_PCM) == audioop.lin2alaw(ALL_PCM.tobytes(), 2)
    every_byte = bytes(range(256))
    assert alaw_decode(every_byte).tobytes() == audioop.alaw2lin(every_byte, 2)


def test_g711_round_trip_error_is_small_relative_to_level():
    x = voiced(1.0, 0.5)
    for enc, dec in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        err = dec(enc(x)).astype(float) - x
        snr = 10 * np.log10(np.mean(x.astype(float) ** 2) / np.mean(err**2))
        assert snr > 30


def test_pcm16_odd_length_is_a_media_error():
    with pytest.raises(MediaError, match="odd length"):
        pcm16_from_bytes(b"\x00\x01\x02")
    assert pcm16_from_bytes(b"\x01\x00\xff\x7f").tolist() == [1, 32767]
    assert pcm16_from_bytes(b"\x00\x01", byteorder="big").tolist() == [1]


def test_audio_chunk_validates_and_decodes_wire_formats():
    chunk = AudioChunk.from_ulaw("s", b"\xff" * 160)
    assert chunk.sample_rate == 8000 and chunk.duration == pytest.approx(0.02)
    assert np.all(chunk.pcm == 0)
    with pytest.raises(MediaError):
        AudioChunk("s", np.zeros(10, dtype=np.float32), 16000)  # type: ignore[arg-type]
    with pytest.raises(MediaError, match="sample rate"):
        AudioChunk("s", np.zeros(10, dtype=np.int16), 100)


def test_streaming_resampler_matches_one_shot_resampling():
    x = voiced(2.0, 0.3, rate=8000)
    whole = StreamResampler(8000)
    one_shot = np.concatenate([whole.push(x), whole.flush()])
    pieces = StreamResampler(8000)
    parts = [pieces.push(x[i:i + 160]) for i in range(0, len(x), 160)] + [pieces.flush()]
    streamed = np.concatenate(parts)
    assert abs(len(one_shot) - 32000) <= 64
    n = min(len(one_shot), len(streamed))
    assert np.max(np.abs(one_shot[:n].astype(int) - streamed[:n])) <= 2


@pytest.mark.skipif(not SPEECH.exists(), reason="shared corpus not present")
def test_decode_flac_is_bit_exact_with_int16_scaling():
    import soundfile as sf

    path = SPEECH / "bonafide" / "1688-142285-0003.flac"
    expected, rate = sf.read(path, dtype="int16")
    decoded = decode_file(path)
    assert rate == 16000 and decoded.source_codec == "flac"
    assert np.array_equal(decoded.pcm, expected)


def _write(path: Path, codec: str, rate: int, seconds: float = 1.5) -> Path:
    pcm = voiced(seconds, 0.3, rate=rate)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        fmt = stream.codec_context.codec.audio_formats[0].name
        resampler = av.AudioResampler(format=fmt, layout="mono", rate=rate)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        for rframe in resampler.resample(frame):
            for packet in stream.encode(rframe):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


@pytest.mark.parametrize(("name", "codec", "rate"), [
    ("a.wav", "pcm_s16le", 8000), ("a.flac", "flac", 44100), ("a.mp3", "libmp3lame", 44100),
    ("a.ogg", "libopus", 48000), ("a.m4a", "aac", 22050), ("mulaw.wav", "pcm_mulaw", 8000),
])
def test_decodes_common_containers_to_16k_mono(tmp_path, name, codec, rate):
    decoded = decode_file(_write(tmp_path / name, codec, rate))
    assert decoded.sample_rate == 16000 and decoded.pcm.dtype == np.int16
    assert decoded.duration == pytest.approx(1.5, abs=0.1)
    assert np.abs(decoded.pcm).max() > 1000


def test_decodes_the_audio_track_of_a_video(tmp_path):
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as out:
        vs = out.add_stream("mpeg4", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        aus = out.add_stream("aac", rate=16000)
        aus.layout = "mono"
        for i in range(25):
            img = np.full((48, 64, 3), i * 8, dtype=np.uint8)
            for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        pcm = voiced(1.0, 0.3).astype(np.float32).reshape(1, -1) / 32768
        for start in range(0, pcm.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(pcm[:, start:start + 1024], format="fltp",
                                               layout="mono")
            frame.sample_rate = 16000
            for packet in aus.encode(frame):
                out.mux(packet)
        for stream in (vs, aus):
            for packet in stream.encode(None):
                out.mux(packet)
    assert decode_file(path).duration == pytest.approx(1.0, abs=0.1)


def test_bad_inputs_give_clear_media_errors(tmp_path):
    with pytest.raises(MediaError, match="no such file"):
        decode_file(tmp_path / "missing.wav")
    with pytest.raises(MediaError, match="directory"):
        decode_file(tmp_path)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(MediaError):
        decode_file(junk)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(MediaError):
        decode_file(empty)
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not audio\n" * 20)
    with pytest.raises(MediaError):
        decode_file(text)


def test_video_without_audio_is_reported(tmp_path):
    path = tmp_path / "silent.mp4"
    with av.open(str(path), "w") as out:
        vs = out.add_stream("mpeg4", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        for _ in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
    with pytest.raises(MediaError, match="no audio stream"):
        decode_file(path)


def test_truncated_file_yields_what_decoded_or_a_clear_error(tmp_path):
    full = _write(tmp_path / "full.mp3", "libmp3lame", 44100, seconds=3.0)
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    decoded = decode_file(cut)
    assert 0.5 < decoded.duration < 2.5


def test_hostile_length_is_refused(tmp_path):
    path = _write(tmp_path / "long.wav", "pcm_s16le", 8000, seconds=3.0)
    with pytest.raises(MediaError, match="longer than"):
        decode_file(path, max_seconds=1.0)
