"""Import a published AASIST / AASIST-L checkpoint as a StreamGuard ONNX model.

Why this exists: the runtime loads ONNX files only (ONNX Runtime, no torch),
but operators may want to run the public AASIST reference detectors (clovaai,
MIT licence) next to, or instead of, the shipped model. The weights are not
redistributed with StreamGuard; the operator supplies the ``.pth`` and this
module turns it into ``<name>.onnx`` + ``<name>.json`` following the model
contract in models/README.md, so the core treats it like any other model.

Steps: read the checkpoint with ``torch.load(weights_only=True)`` (no
arbitrary pickles), recognise the variant from its tensor shapes, load it
strictly into our re-implementation (:mod:`streamguard.importers.aasist_net`),
export to ONNX with a dynamic batch axis, check ONNX Runtime against torch on
a random batch, then write the files. Every failure, from a missing file to a
numerical mismatch, is reported as :class:`ModelImportError` with a message a
user can act on; partially written files are removed.

Imported models are uncalibrated (``"method": "none"``, softmax of the
logits); the published checkpoints were trained on ASVspoof 2019 LA and are
not tuned for telephony or modern voice clones.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import pickle
import re
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from streamguard.importers.aasist_net import (
    AASIST,
    N_SAMPLES,
    SAMPLE_RATE,
    VARIANTS,
    LogitsFirst,
)
from streamguard.importers.common import (
    ModelImportError,
    check_name,
    sha256,
    write_onnx,
    write_sidecar,
)

__all__ = ["ModelImportError", "detect_variant", "import_aasist", "load_state_dict"]

INPUT_NAME = "waveform"
OUTPUT_NAME = "logits"
EMBEDDING_NAME = "embedding"
OPSET = 18
TOLERANCE = 1e-3
DEFAULT_NAMES = {"AASIST": "aasist", "AASIST-L": "aasist-l"}


def load_state_dict(checkpoint: Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file as a flat ``name -> tensor`` mapping.

    Accepts a bare state dict (the published format) and the common wrappers
    ``{"state_dict": ...}`` / ``{"model": ...}`` and ``module.`` prefixes.
    """
    if not checkpoint.exists():
        raise ModelImportError(f"checkpoint {checkpoint} does not exist")
    if not checkpoint.is_file():
        raise ModelImportError(f"checkpoint {checkpoint} is not a file")
    try:
        with checkpoint.open("rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise ModelImportError(f"cannot read checkpoint {checkpoint}: {exc}") from exc
    # torch.save writes a zip archive (or, before torch 1.6, a pickle).
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
        what = "an empty file" if not head else "neither a zip archive nor a pickle"
        raise ModelImportError(f"{checkpoint} is not a PyTorch checkpoint ({what})")
    try:
        obj = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        detail = f" (found {found.group(1)})" if found else ""
        raise ModelImportError(
            f"{checkpoint} holds Python objects other than tensors{detail}, e.g. a whole "
            "pickled model; it is refused because loading it could run arbitrary code. "
            "Save the weights with torch.save(model.state_dict(), path) instead") from exc
    except Exception as exc:  # corrupt input surfaces as arbitrary exception types
        detail = f"{type(exc).__name__}: {exc}".splitlines()[0].split(". ")[0][:300]
        raise ModelImportError(
            f"{checkpoint} is not a readable PyTorch checkpoint ({detail})") from exc

    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner:
                obj = inner
                break
    if not isinstance(obj, Mapping):
        raise ModelImportError(
            f"{checkpoint} holds a {type(obj).__name__}, not a state dict (name -> tensor)")
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ModelImportError(
                f"{checkpoint} is not a state dict: entry {key!r} is a "
                f"{type(value).__name__}, not a tensor")
        name = key.removeprefix("module.")
        state[name] = value
    if not state:
        raise ModelImportError(f"{checkpoint} holds an empty state dict")
    return state


def _mismatches(model: AASIST, state: Mapping[str, torch.Tensor]) -> list[str]:
    expected = model.state_dict()
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [
        f"{k}: shape {tuple(state[k].shape)}, expected {tuple(v.shape)}"
        for k, v in expected.items() if k in state and state[k].shape != v.shape
    ]
    return problems


def detect_variant(state: Mapping[str, torch.Tensor]) -> str:
    """``"AASIST"`` or ``"AASIST-L"``, whichever matches every name and shape."""
    report: dict[str, list[str]] = {}
    for variant, config in VARIANTS.items():
        problems = _mismatches(AASIST(config), state)
        if not problems:
            return variant
        report[variant] = problems
    closest, problems = min(report.items(), key=lambda item: len(item[1]))
    expected = AASIST(VARIANTS[closest]).state_dict()
    known = sum(1 for key in state if key in expected)
    if known < len(expected) // 2:
        sample = ", ".join(list(state)[:3])
        raise ModelImportError(
            f"checkpoint is not an AASIST or AASIST-L state dict: only {known} of its "
            f"{len(state)} tensor names (e.g. {sample}) belong to AASIST, which has "
            f"{len(expected)}")
    shown = "; ".join(problems[:5]) + (f"; ... ({len(problems)} in all)"
                                       if len(problems) > 5 else "")
    raise ModelImportError(
        f"checkpoint does not match AASIST or AASIST-L (closest: {closest}, "
        f"{len(problems)} mismatches: {shown})")


def _build(state: Mapping[str, torch.Tensor], variant: str) -> AASIST:
    model = AASIST(VARIANTS[variant])
    try:
        model.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:  # dtype / shape trouble detect_variant missed
        raise ModelImportError(f"cannot load the checkpoint into {variant}: {exc}") from exc
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelImportError(f"checkpoint tensor {name} holds NaN or infinite values")
    return model.eval()


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[io.StringIO]:
    """Collect the exporter's progress prints, warnings and log lines (shown
    only if the export fails)."""
    log = io.StringIO()
    logger = logging.getLogger("torch.onnx")
    old_level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(log), \
                contextlib.redirect_stderr(log):
            warnings.simplefilter("ignore")
            yield log
    finally:
        logger.setLevel(old_level)


def _export(model: AASIST, path: Path) -> None:
    wrapper = LogitsFirst(model).eval()
    # Batch 2 example + explicit Dim: a batch-1 example makes the exporter
    # specialise the batch axis to 1.
    example = torch.zeros(2, N_SAMPLES)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with _quiet_exporter() as log:
        try:
            torch.onnx.export(
                wrapper, (example,), str(path),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME, EMBEDDING_NAME],
                dynamic_shapes=({0: batch},),
                opset_version=OPSET,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        except Exception as exc:  # the exporter raises many unrelated types
            tail = log.getvalue().strip()[-2000:]
            raise ModelImportError(f"ONNX export failed: {exc}\n{tail}".rstrip()) from exc
    if not path.is_file():
        raise ModelImportError(f"ONNX export wrote no file at {path}")


def _verify(model: AASIST, path: Path) -> float:
    """Max abs logit difference, ONNX Runtime vs torch, on batches of 3 and 1."""
    import onnxruntime as ort

    rng = np.random.default_rng(20220513)
    waves = (rng.standard_normal((3, N_SAMPLES)) * 0.1).astype(np.float32)
    with torch.inference_mode():
        _, expected_t = model(torch.from_numpy(waves))
    expected: npt.NDArray[np.float32] = expected_t.numpy()
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        batch3 = np.asarray(session.run([OUTPUT_NAME], {INPUT_NAME: waves})[0])
        batch1 = np.asarray(session.run([OUTPUT_NAME], {INPUT_NAME: waves[:1]})[0])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelImportError(f"ONNX Runtime cannot run the exported model: {exc}") from exc
    if batch3.shape != (3, 2) or batch1.shape != (1, 2):
        raise ModelImportError(
            f"exported model returns logits of shape {batch3.shape} / {batch1.shape}, "
            "expected (3, 2) / (1, 2)")
    diff = max(float(np.max(np.abs(batch3 - expected))),
               float(np.max(np.abs(batch1 - expected[:1]))))
    if not math.isfinite(diff) or diff > TOLERANCE:
        raise ModelImportError(
            f"ONNX Runtime output differs from torch by {diff:.3g} (tolerance {TOLERANCE})")
    return diff


def import_aasist(checkpoint: Path, model_dir: Path, name: str | None = None) -> Path:
    """Convert an AASIST / AASIST-L ``.pth`` into ``model_dir/<name>.onnx`` (+ ``.json``).

    ``name`` defaults to ``"aasist"`` or ``"aasist-l"`` by detected variant.
    Returns the path of the ONNX file; raises :class:`ModelImportError`.
    """
    checkpoint = Path(checkpoint)
    model_dir = Path(model_dir)
    check_name(name)
    state = load_state_dict(checkpoint)
    variant = detect_variant(state)
    model = _build(state, variant)
    name = name or DEFAULT_NAMES[variant]
    sha = sha256(checkpoint)
    written = write_onnx(model_dir, name, lambda path: _export(model, path),
                         lambda path: _verify(model, path))

    config = VARIANTS[variant]
    sidecar: dict[str, Any] = {
        "name": name,
        "version": f"aasist-import-{sha[:8]}",
        "architecture": variant,
        "sample_rate": SAMPLE_RATE,
        "input_samples": N_SAMPLES,
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "bonafide_index": 1,
        "calibration": {"method": "none", "a": 1.0, "b": 0.0},
        "calibration_n": 0,
        "provenance": (
            f"imported from checkpoint {checkpoint.name} (sha256 {sha}); "
            f"{variant} by Jung et al. (ICASSP 2022), clovaai/aasist weights (MIT), "
            "trained on ASVspoof 2019 LA; uncalibrated"),
        "checkpoint_sha256": sha,
        "embedding_name": EMBEDDING_NAME,
        "embedding_dim": 5 * int(config["gat_dims"][1]),
        "model_config": config,
        "export": {
            "opset": OPSET,
            "torch": torch.__version__,
            "seconds": round(written.export_seconds, 2),
            "max_abs_diff_vs_torch": written.max_abs_diff,
        },
    }
    return write_sidecar(written, sidecar)
