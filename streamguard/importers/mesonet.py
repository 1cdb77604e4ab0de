"""Import a published MesoNet checkpoint (Keras ``.h5``) as a StreamGuard ONNX face model.

Why this exists: operators may want to run the public MesoNet detectors
(Afchar et al., WIFS 2018; github.com/DariusAf/MesoNet, Apache-2.0) next to
the shipped face-swap classifier, e.g. to compare them. The weights are not
redistributed with StreamGuard; the operator supplies one of the four
published files (``Meso4_DF.h5``, ``Meso4_F2F.h5``, ``MesoInception_DF.h5``,
``MesoInception_F2F.h5``) and ``streamguard models import mesonet FILE.h5``
turns it into ``<name>.onnx`` + ``<name>.json`` in the user model dir.

Steps:

1. :func:`read_mesonet_h5` (torch-free, h5py) reads every weight array,
   recognises the variant from the layer set (4 convolutions: Meso4, 16:
   MesoInception4) and maps Keras layers to our parameter names by Keras
   *creation order* (the numeric suffix of ``conv2d_k``), never by file
   position -- Keras 2.1.5 stores MesoInception layers in depth order and
   two of its 3x3 kernels have the same shape. Kernels are transposed to
   PyTorch layouts (conv OIHW, dense (out, in)). Every shape is checked.
2. The arrays are loaded strictly into our PyTorch re-implementation
   (:mod:`streamguard.importers.mesonet_net`), exported to ONNX (opset 17,
   dynamic batch axis; the TorchScript exporter, ~1 s for these plain CNNs
   against ~10 s for the dynamo exporter), and ONNX Runtime is checked
   against torch.
3. The sidecar JSON states the face-model contract explicitly (see
   :data:`CONTRACT`): NHWC RGB 256x256 float32 in [0, 1] (pixel / 255, no
   mean subtraction); outputs ``prob_real`` = sigmoid = **P(real)** (the
   published meaning, 1 = REAL) and ``logit_real`` (its pre-sigmoid logit).
   The runtime scores ``P(swapped) = sigmoid(a * m + b)`` with
   ``m = -logit_real``; an imported model is uncalibrated (a = 1, b = 0).

Failures (missing file, not HDF5, not a MesoNet, NaNs, export or parity
failure) raise :class:`ModelImportError`; partial files are removed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamguard.importers.common import (
    ModelImportError,
    check_name,
    sha256,
    valid_name,
    write_onnx,
    write_sidecar,
)

__all__ = [
    "CONTRACT",
    "ModelImportError",
    "import_mesonet",
    "read_mesonet_h5",
]

INPUT_NAME = "image"
PROB_NAME = "prob_real"
LOGIT_NAME = "logit_real"
INPUT_SIZE = 256
OPSET = 17
TOLERANCE = 1e-4
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

# The face-classifier contract shared by imported MesoNets and the shipped model.
CONTRACT: dict[str, Any] = {
    "task": "face_swap",
    "input_name": INPUT_NAME,
    "input_layout": "NHWC",
    "input_size": [INPUT_SIZE, INPUT_SIZE],
    "color": "RGB",
    "input_scaling": "pixel / 255 -> [0, 1], float32, no mean subtraction",
    "crop": {"method": "square", "scale": 1.3,
             "note": "square of side 1.3 x max(w, h) of the face box around its centre, "
                     "edge-padded, bilinear resize"},
    "output_name": LOGIT_NAME,
    "output_kind": "logit",
    "output_positive": "real",
    "outputs": {
        PROB_NAME: "sigmoid output of the published model: P(real); 1 = REAL, 0 = FAKE",
        LOGIT_NAME: "pre-sigmoid logit of P(real)",
    },
    "score": "P(swapped) = sigmoid(a * m + b), m = -logit_real",
}

_CONV_SHAPES: dict[str, dict[str, tuple[int, ...]]] = {
    # torch-layout shapes (OIHW)
    "Meso4": {
        "block1": (8, 3, 3, 3), "block2": (8, 8, 5, 5),
        "conv3": (16, 8, 5, 5), "conv4": (16, 16, 5, 5),
    },
    "MesoInception4": {
        **{f"block1.{k}": s for k, s in {
            "b1": (1, 3, 1, 1), "b2a": (4, 3, 1, 1), "b2b": (4, 4, 3, 3),
            "b3a": (4, 3, 1, 1), "b3b": (4, 4, 3, 3), "b4a": (2, 3, 1, 1),
            "b4b": (2, 2, 3, 3)}.items()},
        **{f"block2.{k}": s for k, s in {
            "b1": (2, 11, 1, 1), "b2a": (4, 11, 1, 1), "b2b": (4, 4, 3, 3),
            "b3a": (4, 11, 1, 1), "b3b": (4, 4, 3, 3), "b4a": (2, 11, 1, 1),
            "b4b": (2, 2, 3, 3)}.items()},
        "conv3": (16, 12, 5, 5), "conv4": (16, 16, 5, 5),
    },
}
_BN_CHANNELS = {"Meso4": (8, 8, 16, 16), "MesoInception4": (11, 12, 16, 16)}
_CONV_COUNT = {4: "Meso4", 16: "MesoInception4"}
_LAYER_RE = re.compile(r"^(conv2d|batch_normalization|dense)_(\d+)$")

Array = npt.NDArray[np.float32]


def _read_layers(path: Path) -> dict[str, dict[str, Array]]:
    """``layer -> {kernel|bias|gamma|beta|moving_mean|moving_variance: array}``."""
    try:
        import h5py  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - dev extra missing
        raise ModelImportError(
            "reading Keras .h5 files needs h5py (pip install 'streamguard[dev]')") from exc
    if not path.exists():
        raise ModelImportError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise ModelImportError(f"checkpoint {path} is not a file")
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise ModelImportError(f"cannot read checkpoint {path}: {exc}") from exc
    if head != _HDF5_MAGIC:
        what = "an empty file" if not head else "no HDF5 signature"
        raise ModelImportError(
            f"{path} is not a Keras HDF5 weights file ({what}); expected one of the "
            "published MesoNet .h5 files")
    layers: dict[str, dict[str, Array]] = {}

    def visit(name: str, obj: object) -> None:
        if not isinstance(obj, h5py.Dataset):
            return
        parts = name.split("/")
        kind = parts[-1].split(":")[0]
        layers.setdefault(parts[0], {})[kind] = np.asarray(obj[()], dtype=np.float32)

    try:
        with h5py.File(path, "r") as fh:
            fh.visititems(visit)
    except ModelImportError:
        raise
    except Exception as exc:  # h5py raises OSError/KeyError/ValueError on corrupt files
        detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        raise ModelImportError(f"{path} is not a readable HDF5 file ({detail})") from exc
    return layers


def _by_creation(layers: dict[str, dict[str, Array]], prefix: str) -> list[dict[str, Array]]:
    found = []
    for name, weights in layers.items():
        match = _LAYER_RE.match(name)
        if match and match.group(1) == prefix:
            found.append((int(match.group(2)), weights))
    return [w for _, w in sorted(found, key=lambda item: item[0])]


def _take(weights: dict[str, Array], key: str, layer: str) -> Array:
    if key not in weights:
        raise ModelImportError(f"layer {layer} lacks its {key!r} array")
    return weights[key]


def read_mesonet_h5(path: Path) -> tuple[str, dict[str, Array]]:
    """Read a MesoNet ``.h5`` into ``(variant, {torch parameter name: array})``.

    Torch-free. Arrays are already in PyTorch layouts; BatchNorm buffers use
    PyTorch names (``running_mean`` / ``running_var``).
    """
    path = Path(path)
    layers = _read_layers(path)
    convs = _by_creation(layers, "conv2d")
    bns = _by_creation(layers, "batch_normalization")
    denses = _by_creation(layers, "dense")
    variant = _CONV_COUNT.get(len(convs))
    if variant is None or len(bns) != 4 or len(denses) != 2:
        sample = ", ".join(sorted(layers)[:4]) or "none"
        raise ModelImportError(
            f"{path} is not a MesoNet checkpoint: it has {len(convs)} conv2d, {len(bns)} "
            f"batch_normalization and {len(denses)} dense layers (layers: {sample}, ...); "
            "Meso4 has 4/4/2, MesoInception4 16/4/2")
    state: dict[str, Array] = {}
    for (name, shape), weights in zip(_CONV_SHAPES[variant].items(), convs, strict=True):
        kernel = _take(weights, "kernel", name).transpose(3, 2, 0, 1)
        state[f"{name}.weight"] = np.ascontiguousarray(kernel)
        state[f"{name}.bias"] = _take(weights, "bias", name)
        if kernel.shape != shape or state[f"{name}.bias"].shape != (shape[0],):
            raise ModelImportError(
                f"{path}: {variant} layer {name} has kernel {kernel.shape}, expected {shape}")
    for i, (channels, weights) in enumerate(zip(_BN_CHANNELS[variant], bns, strict=True), 1):
        for ours, theirs in (("weight", "gamma"), ("bias", "beta"),
                             ("running_mean", "moving_mean"),
                             ("running_var", "moving_variance")):
            arr = _take(weights, theirs, f"bn{i}")
            if arr.shape != (channels,):
                raise ModelImportError(
                    f"{path}: {variant} bn{i}.{theirs} has shape {arr.shape}, "
                    f"expected ({channels},)")
            state[f"bn{i}.{ours}"] = arr
    for name, (fan_in, fan_out), weights in zip(("fc1", "fc2"), ((1024, 16), (16, 1)), denses,
                                                strict=True):
        kernel = _take(weights, "kernel", name)
        bias = _take(weights, "bias", name)
        if kernel.shape != (fan_in, fan_out) or bias.shape != (fan_out,):
            raise ModelImportError(
                f"{path}: {variant} {name} has kernel {kernel.shape}, "
                f"expected ({fan_in}, {fan_out})")
        state[f"{name}.weight"] = np.ascontiguousarray(kernel.T)
        state[f"{name}.bias"] = bias
    for key, arr in state.items():
        if not np.all(np.isfinite(arr)):
            raise ModelImportError(f"{path}: tensor {key} holds NaN or infinite values")
    return variant, state


def _build(variant: str, state: dict[str, Array]) -> Any:
    import torch

    from streamguard.importers.mesonet_net import build

    net = build(variant)
    tensors = {k: torch.from_numpy(v.copy()) for k, v in state.items()}
    expected = net.state_dict()
    for key in expected:
        if key.endswith("num_batches_tracked"):
            tensors[key] = expected[key]
    try:
        net.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise ModelImportError(f"cannot load the weights into {variant}: {exc}") from exc
    return net.eval()


def torch_forward(variant: str, state: dict[str, Array], images: Array) -> Array:
    """P(real) of our PyTorch re-implementation (used by tests and the importer)."""
    import torch

    net = _build(variant, state)
    with torch.inference_mode():
        logit = net(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)))
    return np.asarray(torch.sigmoid(logit).numpy(), dtype=np.float32)


def _export(net: Any, path: Path) -> None:
    import contextlib
    import io
    import logging
    import warnings

    import torch

    from streamguard.importers.mesonet_net import WithProbability

    wrapper = WithProbability(net).eval()
    example = torch.zeros(2, INPUT_SIZE, INPUT_SIZE, 3)
    log = io.StringIO()
    logger = logging.getLogger("torch.onnx")
    old_level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(log), \
                contextlib.redirect_stderr(log):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper, (example,), str(path),
                input_names=[INPUT_NAME], output_names=[PROB_NAME, LOGIT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, PROB_NAME: {0: "batch"},
                              LOGIT_NAME: {0: "batch"}},
                opset_version=OPSET, dynamo=False, verbose=False)
    except Exception as exc:  # the exporter raises many unrelated types
        tail = log.getvalue().strip()[-2000:]
        raise ModelImportError(f"ONNX export failed: {exc}\n{tail}".rstrip()) from exc
    finally:
        logger.setLevel(old_level)
    if not path.is_file():
        raise ModelImportError(f"ONNX export wrote no file at {path}")


def _verify(net: Any, path: Path) -> float:
    """Max |P(real)| difference, ONNX Runtime vs torch, batches of 3 and 1."""
    import onnxruntime as ort
    import torch

    rng = np.random.default_rng(20180101)
    images = rng.random((3, INPUT_SIZE, INPUT_SIZE, 3), dtype=np.float32)
    with torch.inference_mode():
        expected = torch.sigmoid(net(torch.from_numpy(images))).numpy()
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        batch3 = np.asarray(session.run([PROB_NAME], {INPUT_NAME: images})[0])
        batch1 = np.asarray(session.run([PROB_NAME], {INPUT_NAME: images[:1]})[0])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelImportError(f"ONNX Runtime cannot run the exported model: {exc}") from exc
    if batch3.shape != (3, 1) or batch1.shape != (1, 1):
        raise ModelImportError(
            f"exported model returns {batch3.shape} / {batch1.shape}, expected (3, 1) / (1, 1)")
    diff = max(float(np.max(np.abs(batch3 - expected))),
               float(np.max(np.abs(batch1 - expected[:1]))))
    if not np.isfinite(diff) or diff > TOLERANCE:
        raise ModelImportError(
            f"ONNX Runtime output differs from torch by {diff:.3g} (tolerance {TOLERANCE})")
    return diff


def _default_name(path: Path, variant: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]", "-", path.stem).strip("-._").lower()
    return stem[:64] if stem and valid_name(stem) else variant.lower()


def import_mesonet(h5_path: Path, model_dir: Path, name: str | None = None) -> Path:
    """Convert a MesoNet ``.h5`` into ``model_dir/<name>.onnx`` (+ ``.json``).

    ``name`` defaults to the file stem in lower case (``meso4_df``, ...).
    Returns the ONNX path; raises :class:`ModelImportError`.
    """
    import torch

    h5_path = Path(h5_path)
    model_dir = Path(model_dir)
    check_name(name)
    variant, state = read_mesonet_h5(h5_path)
    net = _build(variant, state)
    name = name or _default_name(h5_path, variant)
    sha = sha256(h5_path)
    written = write_onnx(model_dir, name, lambda path: _export(net, path),
                         lambda path: _verify(net, path))

    trained_on = {"df": "Deepfake", "f2f": "Face2Face"}.get(
        h5_path.stem.rsplit("_", 1)[-1].lower(), "unknown (not a published file name)")
    sidecar: dict[str, Any] = {
        "name": name,
        "version": f"mesonet-import-{sha[:8]}",
        "architecture": variant,
        **CONTRACT,
        "calibration": {"method": "none", "a": 1.0, "b": 0.0},
        "calibration_n": 0,
        "provenance": (
            f"imported from {h5_path.name} (sha256 {sha}); {variant} by Afchar et al. "
            "(WIFS 2018), DariusAf/MesoNet weights (Apache-2.0), trained on "
            f"{trained_on} faces; uncalibrated; the published output is P(real)"),
        "checkpoint_sha256": sha,
        "export": {"opset": OPSET, "torch": torch.__version__,
                   "seconds": round(written.export_seconds, 2),
                   "max_abs_diff_vs_torch": written.max_abs_diff},
    }
    return write_sidecar(written, sidecar)
