"""AASIST / AASIST-L import path: our re-implementation, exported to ONNX, must
reproduce the original clovaai/aasist outputs recorded in shared/reference/aasist.

Needs torch (the dev extra) and the shared reference folder next to the repo;
the module is skipped cleanly without them. Each checkpoint is imported once
per module (export takes seconds) and the corpus is scored once per model.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
sf = pytest.importorskip("soundfile")
pytest.importorskip("onnxscript")

SHARED = Path(__file__).resolve().parents[2] / "shared"
REF = SHARED / "reference" / "aasist"
SPEECH = SHARED / "data" / "speech"

pytestmark = pytest.mark.skipif(
    not all(p.exists() for p in (REF / "AASIST.pth", REF / "AASIST-L.pth",
                                 REF / "scores.csv", SPEECH / "labels.csv")),
    reason=f"AASIST reference material not found under {SHARED}",
)

from streamguard.errors import StreamGuardError  # noqa: E402
from streamguard.importers.aasist import (  # noqa: E402
    ModelImportError,
    import_aasist,
)
from streamguard.importers.aasist_net import (  # noqa: E402
    AASIST,
    N_SAMPLES,
    VARIANTS,
    sinc_band_pass,
)

# model name -> (checkpoint, architecture, parity.json key, scores.csv column prefix)
MODELS = {
    "aasist": ("AASIST.pth", "AASIST", "aasist", "aasist"),
    "aasist-l": ("AASIST-L.pth", "AASIST-L", "aasistl", "aasistl"),
}
TOL = 1e-3
CHUNK = 8  # ORT batch size for the corpus (bounds peak memory to ~1 GB)


def load_window(path: Path) -> np.ndarray:
    """Reference preprocessing: int16 / 32768, first 64600 samples, tiled if short."""
    pcm, sr = sf.read(str(path), dtype="int16", always_2d=False)
    assert sr == 16000 and pcm.ndim == 1, path
    x = pcm.astype(np.float32) / 32768.0
    if len(x) < N_SAMPLES:
        x = np.tile(x, int(N_SAMPLES / len(x)) + 1)
    return x[:N_SAMPLES]


def session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_logits(sess: ort.InferenceSession, waves: np.ndarray) -> np.ndarray:
    out = [sess.run(["logits"], {"waveform": waves[i:i + CHUNK]})[0]
           for i in range(0, len(waves), CHUNK)]
    return np.concatenate(out, axis=0)


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("aasist-models")
    return {name: import_aasist(REF / ckpt, directory) for name, (ckpt, *_) in MODELS.items()}


@pytest.fixture(scope="module")
def sessions(imported: dict[str, Path]) -> dict[str, ort.InferenceSession]:
    return {name: session(path) for name, path in imported.items()}


@pytest.fixture(scope="module")
def parity() -> dict:
    return json.loads((REF / "parity.json").read_text())


@pytest.fixture(scope="module")
def seed0() -> np.ndarray:
    return np.load(REF / "input_seed0.npy").astype(np.float32).reshape(1, N_SAMPLES)


@pytest.fixture(scope="module")
def corpus() -> tuple[np.ndarray, list[dict[str, str]]]:
    with (SPEECH / "labels.csv").open(newline="") as fh:
        labels = list(csv.DictReader(fh))
    with (REF / "scores.csv").open(newline="") as fh:
        scores = {row["path"]: row for row in csv.DictReader(fh)}
    assert labels and {row["path"] for row in labels} <= set(scores)
    waves = np.stack([load_window(SPEECH / row["path"]) for row in labels])
    return waves, [scores[row["path"]] for row in labels]


# ---------------------------------------------------------------- contract

@pytest.mark.parametrize("name", MODELS)
def test_files_and_sidecar(imported: dict[str, Path], name: str) -> None:
    onnx_path = imported[name]
    assert onnx_path.name == f"{name}.onnx"
    meta = json.loads(onnx_path.with_suffix(".json").read_text())
    ckpt, arch, *_ = MODELS[name]
    import hashlib

    sha = hashlib.sha256((REF / ckpt).read_bytes()).hexdigest()
    assert meta["name"] == name
    assert meta["architecture"] == arch
    assert meta["version"] == f"aasist-import-{sha[:8]}"
    assert sha in meta["provenance"]
    assert meta["sample_rate"] == 16000 and meta["input_samples"] == N_SAMPLES
    assert meta["input_name"] == "waveform" and meta["output_name"] == "logits"
    assert meta["bonafide_index"] == 1
    assert meta["calibration"] == {"method": "none", "a": 1.0, "b": 0.0}
    assert meta["calibration_n"] == 0
    # nothing but the two files
    assert sorted(p.name for p in onnx_path.parent.iterdir()) == sorted(
        f"{n}.{ext}" for n in MODELS for ext in ("onnx", "json"))


@pytest.mark.parametrize("name", MODELS)
def test_onnx_signature(sessions: dict[str, ort.InferenceSession], name: str) -> None:
    sess = sessions[name]
    (inp,) = sess.get_inputs()
    assert inp.name == "waveform" and inp.type == "tensor(float)"
    assert isinstance(inp.shape[0], str) and inp.shape[1] == N_SAMPLES
    outs = sess.get_outputs()
    assert outs[0].name == "logits" and outs[0].shape[1] == 2
    assert outs[1].name == "embedding" and outs[1].shape[1] == 160


# ---------------------------------------------------------------- parity

@pytest.mark.parametrize("name", MODELS)
def test_corpus_matches_reference_scores(
        sessions: dict[str, ort.InferenceSession],
        corpus: tuple[np.ndarray, list[dict[str, str]]], name: str) -> None:
    waves, rows = corpus
    prefix = MODELS[name][3]
    expected = np.array([[float(r[f"{prefix}_logit0"]), float(r[f"{prefix}_logit1"])]
                         for r in rows], dtype=np.float64)
    got = run_logits(sessions[name], waves)
    assert got.shape == (len(rows), 2)
    diff = np.abs(got - expected)
    worst = int(diff.max(axis=1).argmax())
    assert diff.max() <= TOL, (
        f"{name}: max |logit diff| {diff.max():.2e} on {rows[worst]['path']} "
        f"(ours {got[worst]}, reference {expected[worst]})")


@pytest.mark.parametrize("name", MODELS)
def test_seed0_parity(sessions: dict[str, ort.InferenceSession], parity: dict,
                      seed0: np.ndarray, name: str) -> None:
    np.testing.assert_allclose(float(seed0.sum(dtype=np.float64)),
                               parity["input"]["sum"], rtol=1e-6)
    logits = sessions[name].run(["logits"], {"waveform": seed0})[0]
    np.testing.assert_allclose(logits[0], parity[MODELS[name][2]]["logits"], rtol=0, atol=TOL)


@pytest.mark.parametrize("name", MODELS)
def test_batch_equals_single(sessions: dict[str, ort.InferenceSession],
                             corpus: tuple[np.ndarray, list[dict[str, str]]],
                             seed0: np.ndarray, name: str) -> None:
    sess = sessions[name]
    batch = np.concatenate([seed0, corpus[0][[0, 70, 140]]], axis=0)
    together = sess.run(["logits", "embedding"], {"waveform": batch})
    for i in range(len(batch)):
        alone = sess.run(["logits", "embedding"], {"waveform": batch[i:i + 1]})
        np.testing.assert_allclose(together[0][i], alone[0][0], rtol=0, atol=1e-4)
        np.testing.assert_allclose(together[1][i], alone[1][0], rtol=0, atol=1e-4)


def test_sinc_filters_match_reference() -> None:
    ref = np.load(REF / "sinc_band_pass_70x129.npy")
    ours = sinc_band_pass(70, 128, 16000)
    assert ours.shape == ref.shape == (70, 129) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-7)


@pytest.mark.parametrize("name", MODELS)
def test_torch_intermediates_match_parity(parity: dict, seed0: np.ndarray, name: str) -> None:
    """Shapes and sums of every hooked stage in parity.json (locates a divergence)."""
    ckpt, arch, key, _ = MODELS[name]
    model = AASIST(VARIANTS[arch])
    model.load_state_dict(torch.load(REF / ckpt, map_location="cpu", weights_only=True),
                          strict=True)
    model.eval()
    reference = parity[key]["intermediates"]
    seen: dict[str, list[tuple[list[int], float]]] = {}

    def hook(stage: str):
        def record(_module, _inputs, output) -> None:
            outs = output if isinstance(output, tuple) else (output,)
            seen[stage] = [(list(t.shape), float(t.double().sum())) for t in outs]
        return record

    modules = dict(model.named_modules())
    for stage in reference:
        if stage in modules:
            modules[stage].register_forward_hook(hook(stage))
    with torch.inference_mode():
        hidden, logits = model(torch.from_numpy(seed0))
    assert seen, "no stage hooked"
    for stage, got in seen.items():
        want = reference[stage] if isinstance(reference[stage], list) else [reference[stage]]
        assert [g[0] for g in got] == [w["shape"] for w in want], stage
        for (_, total), w in zip(got, want, strict=True):
            scale = max(1.0, abs(w["sum"]))
            assert abs(total - w["sum"]) <= 1e-5 * scale + 1e-3, (stage, total, w["sum"])
    np.testing.assert_allclose(float(hidden.double().sum()),
                               reference["last_hidden"]["sum"], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(logits[0].numpy(), parity[key]["logits"], rtol=0, atol=1e-4)


# ---------------------------------------------------------------- bad input

def _save(obj: object, path: Path) -> Path:
    torch.save(obj, path)
    return path


def test_error_type_is_a_streamguard_error() -> None:
    assert issubclass(ModelImportError, StreamGuardError)


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "random-bytes", "text",
                                  "corrupt-zip", "truncated-checkpoint", "wrong-keys",
                                  "not-a-dict", "non-tensor-values", "wrong-shapes",
                                  "missing-key", "pickled-object"])
def test_bad_checkpoints_raise_model_import_error(tmp_path: Path, case: str) -> None:
    out = tmp_path / "models"
    if case == "missing":
        ckpt = tmp_path / "nope.pth"
    elif case == "directory":
        ckpt = tmp_path
    elif case == "empty":
        ckpt = tmp_path / "empty.pth"
        ckpt.write_bytes(b"")
    elif case == "corrupt-zip":
        ckpt = tmp_path / "corrupt.pth"
        ckpt.write_bytes(b"PK\x03\x04" + np.random.default_rng(1).bytes(4096))
    elif case == "truncated-checkpoint":
        data = (REF / "AASIST-L.pth").read_bytes()
        ckpt = tmp_path / "truncated.pth"
        ckpt.write_bytes(data[: len(data) // 2])
    elif case == "random-bytes":
        ckpt = tmp_path / "random.pth"
        ckpt.write_bytes(np.random.default_rng(0).bytes(4096))
    elif case == "text":
        ckpt = tmp_path / "notes.pth"
        ckpt.write_text("this is not a checkpoint\n")
    elif case == "wrong-keys":
        ckpt = _save({"fc.weight": torch.zeros(2, 3), "fc.bias": torch.zeros(2)},
                     tmp_path / "other.pth")
    elif case == "not-a-dict":
        ckpt = _save([torch.zeros(3)], tmp_path / "list.pth")
    elif case == "non-tensor-values":
        ckpt = _save({"pos_S": 1.0}, tmp_path / "floats.pth")
    elif case == "wrong-shapes":
        state = AASIST(VARIANTS["AASIST"]).state_dict()
        state["out_layer.weight"] = torch.zeros(3, 160)
        ckpt = _save(state, tmp_path / "shapes.pth")
    elif case == "missing-key":
        state = AASIST(VARIANTS["AASIST-L"]).state_dict()
        del state["master2"]
        ckpt = _save(state, tmp_path / "partial.pth")
    else:  # a full pickled module is refused by weights_only loading
        ckpt = _save(torch.nn.Linear(2, 2), tmp_path / "module.pth")
    with pytest.raises(ModelImportError) as info:
        import_aasist(ckpt, out)
    message = str(info.value)
    assert message and "Traceback" not in message
    assert not out.exists() or not any(out.iterdir())


def test_bad_name_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ModelImportError, match="invalid model name"):
        import_aasist(REF / "AASIST-L.pth", tmp_path, name="../escape")
