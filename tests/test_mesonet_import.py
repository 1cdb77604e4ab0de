"""MesoNet .h5 import: parity with the published reference outputs, and clear errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("h5py")

from streamguard.importers.mesonet import (
    ModelImportError,
    import_mesonet,
    read_mesonet_h5,
)

REF = Path(__file__).resolve().parents[2] / "shared" / "reference" / "face"
WEIGHTS = ["Meso4_DF", "Meso4_F2F", "MesoInception_DF", "MesoInception_F2F"]
TOL = 1e-4

needs_ref = pytest.mark.skipif(not (REF / "ref_inputs.npz").is_file(),
                               reason="../shared/reference/face not available")


def _reference() -> dict[str, np.ndarray]:
    out: dict[str, list[float]] = {}
    with (REF / "reference_outputs.csv").open() as fh:
        for row in csv.DictReader(fh):
            out.setdefault(row["weights"], [0.0] * 8)[int(row["index"])] = float(
                row["prob_real_numpy_f64"])
    return {k: np.asarray(v) for k, v in out.items()}


@needs_ref
@pytest.mark.parametrize("weights", WEIGHTS)
def test_import_matches_reference_outputs(weights: str, tmp_path: Path) -> None:
    import onnxruntime as ort

    x = np.load(REF / "ref_inputs.npz")["x"].astype(np.float32)
    expected = _reference()[weights]
    onnx_path = import_mesonet(REF / f"{weights}.h5", tmp_path)
    assert onnx_path == tmp_path / f"{weights.lower()}.onnx"
    meta = json.loads(onnx_path.with_suffix(".json").read_text())
    assert meta["output_positive"] == "real" and meta["output_name"] == "logit_real"
    assert meta["input_layout"] == "NHWC" and meta["input_size"] == [256, 256]
    assert meta["calibration"]["method"] == "none"
    assert len(meta["checkpoint_sha256"]) == 64
    assert meta["architecture"] == ("Meso4" if weights.startswith("Meso4") else "MesoInception4")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    prob, logit = session.run(["prob_real", "logit_real"], {"image": x})
    assert prob.shape == (8, 1)
    diff = np.abs(prob[:, 0] - expected).max()
    assert diff < TOL, f"{weights}: max |P(real) - reference| = {diff:.3g}"
    np.testing.assert_allclose(1 / (1 + np.exp(-logit[:, 0])), prob[:, 0], atol=1e-6)
    # the published meaning: DF models call the two df crops fake, the real crops real
    if weights.endswith("_DF"):
        assert (prob[:2, 0] < 0.5).all() and (prob[2:4, 0] > 0.5).all()


@needs_ref
def test_mapping_uses_creation_order_not_file_order() -> None:
    # conv2d_3 (branch 2, dil 1) and conv2d_5 (branch 3, dil 2) share a shape;
    # swapping them must change the output, so the test above would catch it.
    import h5py

    variant, state = read_mesonet_h5(REF / "MesoInception_DF.h5")
    assert variant == "MesoInception4"
    with h5py.File(REF / "MesoInception_DF.h5", "r") as fh:
        k3 = np.asarray(fh["conv2d_3/conv2d_3/kernel:0"])
    np.testing.assert_array_equal(state["block1.b2b.weight"], k3.transpose(3, 2, 0, 1))
    assert not np.array_equal(state["block1.b2b.weight"], state["block1.b3b.weight"])


def test_not_hdf5_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "weights.h5"
    bad.write_bytes(b"this is not HDF5 at all" * 10)
    with pytest.raises(ModelImportError, match="not a Keras HDF5"):
        import_mesonet(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ModelImportError, match="does not exist"):
        import_mesonet(tmp_path / "nope.h5", tmp_path)
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    with pytest.raises(ModelImportError, match="empty file"):
        import_mesonet(empty, tmp_path)


def test_truncated_and_foreign_hdf5(tmp_path: Path) -> None:
    import h5py

    foreign = tmp_path / "other.h5"
    with h5py.File(foreign, "w") as fh:
        fh["dense_1/dense_1/kernel:0"] = np.zeros((4, 2), np.float32)
    with pytest.raises(ModelImportError, match="not a MesoNet checkpoint"):
        import_mesonet(foreign, tmp_path / "out")
    if (REF / "Meso4_DF.h5").is_file():
        cut = tmp_path / "cut.h5"
        cut.write_bytes((REF / "Meso4_DF.h5").read_bytes()[:20000])
        with pytest.raises(ModelImportError):
            import_mesonet(cut, tmp_path / "out")


def test_invalid_name(tmp_path: Path) -> None:
    with pytest.raises(ModelImportError, match="invalid model name"):
        import_mesonet(tmp_path / "x.h5", tmp_path, name="../evil")


@needs_ref
def test_cli_import_mesonet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main

    rc = main(["models", "import", "mesonet", str(REF / "Meso4_DF.h5"),
               "--model-dir", str(tmp_path), "--name", "meso4"])
    assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "meso4.onnx").is_file() and (tmp_path / "meso4.json").is_file()
    bad = tmp_path / "bad.h5"
    bad.write_text("nope")
    assert main(["models", "import", "mesonet", str(bad), "--model-dir", str(tmp_path)]) == 1
    assert "not a Keras HDF5" in capsys.readouterr().err
