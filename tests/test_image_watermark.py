"""The DWT-DCT (invisible-watermark) probe on images and video frames."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from gateway.cli import main
from streamguard import MediaError
from streamguard.watermark import image as wm
from streamguard.watermark.image import (
    KNOWN_MARKS,
    binomial_tail,
    embed_known,
    probe_frames,
    probe_image_file,
    probe_video_file,
)

cv2 = pytest.importorskip("cv2")
pytest.importorskip("imwatermark")

ASTRONAUT = Path(__file__).resolve().parents[2] / "shared/reference/face/media/astronaut.png"


def natural(h: int = 512, w: int = 512, seed: int = 0) -> np.ndarray:
    """Smooth, saturated colour texture (blurred colour noise). The scheme needs chroma
    texture: on flat or grey content its argmax-coefficient rule is unstable (bench/)."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur((rng.random((h, w, 3)) * 255).astype(np.uint8), (0, 0), 3)
    return cv2.normalize(img, None, 10, 245, cv2.NORM_MINMAX).astype(np.uint8)


def test_known_payloads() -> None:
    sdxl = KNOWN_MARKS[0]
    assert sdxl.name == "sdxl" and len(sdxl.bits) == 48
    message = 0b101100111110110010010000011110111011000110011110
    assert int("".join(map(str, sdxl.bits)), 2) == message
    assert [len(m.bits) for m in KNOWN_MARKS] == [48, 136, 32]


def test_vectorised_reading_equals_the_library() -> None:
    from imwatermark import WatermarkDecoder

    for convention in ("uint8", "float"):
        marked = embed_known(natural(seed=3), convention=convention)
        for img in (marked, natural(seed=4)):
            lib = np.array(WatermarkDecoder("bits", 48).decode(img, "dwtDct")).astype(int)
            ours = wm._bit_means(wm.block_decisions(img, "bgr", "uint8"), 48)
            assert np.array_equal(lib, (ours * 255 > 127).astype(int))


@pytest.mark.parametrize("convention", ["float", "uint8"])
def test_detects_sdxl_mark_both_conventions(convention: str) -> None:
    marked = embed_known(natural(seed=1), convention=convention)
    result = probe_frames([marked])
    assert result.detected and result.mark == "sdxl" and result.bit_errors == 0
    assert result.variant.endswith(convention) or result.bit_errors == 0
    psnr = cv2.PSNR(natural(seed=1), marked)
    assert psnr > 32  # invisible at normal viewing


def test_rgb_order_mark_from_old_diffusers() -> None:
    rgb_marked = embed_known(natural(seed=2)[:, :, ::-1])[:, :, ::-1]  # embedded on RGB
    result = probe_frames([np.ascontiguousarray(rgb_marked)])
    assert result.detected and result.variant.startswith("rgb")


def test_sd1_bytes_payload() -> None:
    result = probe_frames([embed_known(natural(seed=5), KNOWN_MARKS[1], convention="uint8")])
    assert result.detected and result.mark == "sd1"


def test_unmarked_images_are_not_detected() -> None:
    images = [natural(seed=s) for s in range(10, 16)]
    if ASTRONAUT.exists():
        images.append(cv2.imread(str(ASTRONAUT)))
    for img in images:
        result = probe_frames([img])
        assert not result.detected, result
    assert binomial_tail(6, 48) * 12 < 1e-6 < binomial_tail(8, 48) * 12


def test_bad_images(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="too small"):
        probe_frames([np.zeros((100, 100, 3), np.uint8)])
    with pytest.raises(MediaError, match="no pixels"):
        probe_frames([np.zeros((0, 300, 3), np.uint8)])
    with pytest.raises(MediaError, match="8-bit 3-channel"):
        probe_frames([np.zeros((300, 300), np.uint8)])
    with pytest.raises(MediaError, match="no frames"):
        probe_frames([])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(MediaError, match="no pixels"):
        probe_image_file(tmp_path / "empty.png")
    with pytest.raises(MediaError, match=r"junk\.png"):
        probe_image_file(tmp_path / "junk.png")


def _video(path: Path, frames: list[np.ndarray], bitrate: int) -> None:
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.bit_rate = bitrate
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_video_frames_soft_combined(tmp_path: Path) -> None:
    marked = embed_known(natural(480, 640, seed=7))
    _video(tmp_path / "marked.mp4", [marked] * 25, 4_000_000)
    _video(tmp_path / "plain.mp4", [natural(480, 640, seed=7)] * 25, 4_000_000)
    found = probe_video_file(tmp_path / "marked.mp4", frames=4)
    assert found is not None and found.detected and found.frames == 4
    plain = probe_video_file(tmp_path / "plain.mp4", frames=4)
    assert plain is not None and not plain.detected


def test_scan_reports_image_watermark(tmp_path: Path, level_model: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    cv2.imwrite(str(tmp_path / "gen.png"), embed_known(natural(seed=8)))
    cv2.imwrite(str(tmp_path / "photo.png"), natural(seed=9))
    code = main(["scan", "--json", "--model", str(level_model), str(tmp_path / "gen.png"),
                 str(tmp_path / "photo.png")])
    gen, photo = (json.loads(x) for x in capsys.readouterr().out.splitlines())
    assert code == 0
    assert gen["image_watermark"]["detected"] and gen["image_watermark"]["mark"] == "sdxl"
    assert not photo["image_watermark"]["detected"]
    assert gen["provenance"].get("state") in ("absent", None)
