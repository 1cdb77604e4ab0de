"""GE2E speaker encoder (Wan et al., 2018) on the resemblyzer weights, without torch.

Weights are read from the installed ``resemblyzer`` package with the
torch-free reader in :mod:`streamguard.speaker.checkpoint`; they are never
copied into this repository or written to disk in another form. The default
engine builds the ONNX graph in memory (a few protobuf fields written by hand,
so the runtime needs no ``onnx`` package) and runs it in ONNX Runtime, about
twice as fast as the numpy LSTM, which stays as ``engine="numpy"`` to
cross-check the graph.

Shape of the model (SPEC §6–7): input (B, 160, 40) mel power frames →
3-layer LSTM → last hidden state of layer 3 → Linear(256, 256) → ReLU →
L2 norm. An utterance embedding is the normalised mean of its partial
embeddings; cosine similarity of two embeddings lies in [0, 1].
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamguard.errors import MediaError, ModelError
from streamguard.speaker.checkpoint import read_state_dict
from streamguard.speaker.mel import (
    DEFAULT_MIN_COVERAGE,
    DEFAULT_RATE,
    N_MELS,
    PARTIAL_FRAMES,
    partial_mels,
    preprocess,
)

__all__ = [
    "EMBEDDING_DIM",
    "MODEL_NAME",
    "RESEMBLYZER_VERSION",
    "SpeakerEncoder",
    "UtteranceEmbedding",
    "cosine",
    "default_checkpoint",
    "embed_speaker",
    "encoder_onnx_bytes",
]

EMBEDDING_DIM = 256
HIDDEN = 256
LAYERS = 3
RESEMBLYZER_VERSION = "0.1.4"
# Stored with every voiceprint: embeddings of different models are not comparable.
MODEL_NAME = f"ge2e-resemblyzer-{RESEMBLYZER_VERSION}"
# Environment override for deployments that keep the weights elsewhere.
CHECKPOINT_ENV = "STREAMGUARD_GE2E_CHECKPOINT"
_EXPECTED_SHAPES: dict[str, tuple[int, ...]] = {
    **{f"lstm.weight_ih_l{k}": (4 * HIDDEN, N_MELS if k == 0 else HIDDEN) for k in range(LAYERS)},
    **{f"lstm.weight_hh_l{k}": (4 * HIDDEN, HIDDEN) for k in range(LAYERS)},
    **{f"lstm.bias_ih_l{k}": (4 * HIDDEN,) for k in range(LAYERS)},
    **{f"lstm.bias_hh_l{k}": (4 * HIDDEN,) for k in range(LAYERS)},
    "linear.weight": (EMBEDDING_DIM, HIDDEN),
    "linear.bias": (EMBEDDING_DIM,),
}

Float32 = npt.NDArray[np.float32]


def default_checkpoint() -> Path:
    """``pretrained.pt`` of the installed resemblyzer package (found without importing it,
    since importing it would import torch), or ``$STREAMGUARD_GE2E_CHECKPOINT``."""
    env = os.environ.get(CHECKPOINT_ENV)
    if env:
        return Path(env)
    hint = (f"install the weights with: pip install --no-deps 'resemblyzer=={RESEMBLYZER_VERSION}'"
            f" (or set {CHECKPOINT_ENV} to a copy of pretrained.pt)")
    try:
        spec = importlib.util.find_spec("resemblyzer")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"GE2E speaker weights not found: package resemblyzer is missing; {hint}")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "pretrained.pt"
        if candidate.is_file():
            return candidate
    raise ModelError(f"GE2E speaker weights not found: resemblyzer has no pretrained.pt; {hint}")


def cosine(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Cosine similarity; embeddings here are unit length, so it is the dot product."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denom = float(np.linalg.norm(x) * np.linalg.norm(y))
    if denom == 0.0:
        raise ValueError("cosine of a zero vector")
    return float(x @ y) / denom


def _l2_normalise(x: npt.NDArray[Any]) -> npt.NDArray[Any]:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    # ReLU can zero a whole vector (never observed on speech); keep it zero, not NaN.
    return np.asarray(np.where(norm > 0, x / np.where(norm > 0, norm, 1), 0), dtype=x.dtype)


@dataclass(frozen=True, slots=True)
class UtteranceEmbedding:
    """An utterance's embedding with the per-partial embeddings it averages.

    ``partials`` is kept because its spread says how consistent the voice was
    (enrolment uses it to spot several speakers; voiceprints for uncertainty).
    ``speech_seconds`` is the audio left after silence trimming.
    """

    embedding: Float32
    partials: Float32
    speech_seconds: float


# --- In-memory ONNX graph -------------------------------------------------------------
# ONNX Runtime's fused LSTM kernel is 1.5-2x faster than a numpy time loop (whose cost is
# mostly per-call overhead) and batches partials well. The runtime has onnxruntime but
# not the ``onnx`` package, so the graph is serialised here: ONNX files are protocol
# buffers, and a model this small needs only a handful of message types. The bytes go
# straight to ``InferenceSession``; no converted weights are written anywhere.

_ONNX_FLOAT, _ONNX_INT64 = 1, 7
_ATTR_INT, _ATTR_INTS = 2, 7
_IR_VERSION = 8
_OPSET = 17


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 -> two's complement, as protobuf does
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _pb_int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _pb_bytes(field: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _pb_tensor(name: str, array: npt.NDArray[Any]) -> bytes:
    """TensorProto: dims (1), data_type (2), name (8), raw_data (9, little-endian)."""
    if array.dtype == np.float32:
        dtype, raw = _ONNX_FLOAT, np.ascontiguousarray(array, "<f4").tobytes()
    elif array.dtype == np.int64:
        dtype, raw = _ONNX_INT64, np.ascontiguousarray(array, "<i8").tobytes()
    else:
        raise TypeError(f"unsupported initializer dtype {array.dtype}")
    dims = b"".join(_pb_int(1, int(d)) for d in array.shape)
    return dims + _pb_int(2, dtype) + _pb_bytes(8, name) + _pb_bytes(9, raw)


def _pb_node(op: str, inputs: list[str], outputs: list[str],
             **attrs: int | tuple[int, ...]) -> bytes:
    """NodeProto: input (1), output (2), op_type (4), attribute (5).

    AttributeProto: name (1), i (3) or ints (8), type (20: INT 2, INTS 7).
    """
    encoded = b""
    for key, value in attrs.items():
        if isinstance(value, tuple):
            body = b"".join(_pb_int(8, v) for v in value) + _pb_int(20, _ATTR_INTS)
        else:
            body = _pb_int(3, value) + _pb_int(20, _ATTR_INT)
        encoded += _pb_bytes(5, _pb_bytes(1, key) + body)
    return (b"".join(_pb_bytes(1, i) for i in inputs) + b"".join(_pb_bytes(2, o) for o in outputs)
            + _pb_bytes(4, op) + encoded)


def _pb_value_info(name: str, dims: list[int | str]) -> bytes:
    """ValueInfoProto for a float tensor; a str dim is symbolic (e.g. the batch axis)."""
    shape = b"".join(_pb_bytes(1, _pb_bytes(2, d) if isinstance(d, str) else _pb_int(1, d))
                     for d in dims)
    tensor_type = _pb_int(1, _ONNX_FLOAT) + _pb_bytes(2, shape)
    return _pb_bytes(1, name) + _pb_bytes(2, _pb_bytes(1, tensor_type))


def _onnx_reorder(w: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """PyTorch gate order (input, forget, cell, output) -> ONNX (input, output, forget, cell)."""
    i, f, g, o = np.split(np.asarray(w, np.float32), 4, axis=0)
    return np.ascontiguousarray(np.concatenate([i, o, f, g], axis=0))


def encoder_onnx_bytes(state: dict[str, npt.NDArray[Any]]) -> bytes:
    """Serialised ONNX model: mels (B, 160, 40) -> unnormalised ReLU output (B, 256)."""
    nodes = [_pb_node("Transpose", ["mels"], ["x0"], perm=(1, 0, 2))]  # to (T, B, 40)
    inits = [_pb_tensor("axis0", np.array([0], np.int64)),
             _pb_tensor("axis1", np.array([1], np.int64))]
    source = "x0"
    for k in range(LAYERS):
        w = _onnx_reorder(state[f"lstm.weight_ih_l{k}"])[None]
        r = _onnx_reorder(state[f"lstm.weight_hh_l{k}"])[None]
        b = np.concatenate([_onnx_reorder(state[f"lstm.bias_ih_l{k}"][:, None])[:, 0],
                            _onnx_reorder(state[f"lstm.bias_hh_l{k}"][:, None])[:, 0]])[None]
        inits += [_pb_tensor(f"W{k}", w), _pb_tensor(f"R{k}", r), _pb_tensor(f"B{k}", b)]
        nodes.append(_pb_node("LSTM", [source, f"W{k}", f"R{k}", f"B{k}"], [f"Y{k}", f"H{k}"],
                              hidden_size=HIDDEN))
        if k < LAYERS - 1:  # Y is (T, directions=1, B, H): drop the direction axis
            nodes.append(_pb_node("Squeeze", [f"Y{k}", "axis1"], [f"x{k + 1}"]))
            source = f"x{k + 1}"
    inits += [_pb_tensor("Wo", np.ascontiguousarray(np.asarray(state["linear.weight"],
                                                               np.float32).T)),
              _pb_tensor("bo", np.asarray(state["linear.bias"], np.float32))]
    nodes += [_pb_node("Squeeze", [f"H{LAYERS - 1}", "axis0"], ["last"]),
              _pb_node("MatMul", ["last", "Wo"], ["proj"]),
              _pb_node("Add", ["proj", "bo"], ["biased"]),
              _pb_node("Relu", ["biased"], ["embedding"])]
    graph = (b"".join(_pb_bytes(1, n) for n in nodes) + _pb_bytes(2, "ge2e_encoder")
             + b"".join(_pb_bytes(5, t) for t in inits)
             + _pb_bytes(11, _pb_value_info("mels", ["batch", PARTIAL_FRAMES, N_MELS]))
             + _pb_bytes(12, _pb_value_info("embedding", ["batch", EMBEDDING_DIM])))
    opset = _pb_bytes(1, "") + _pb_int(2, _OPSET)
    return (_pb_int(1, _IR_VERSION) + _pb_bytes(2, "streamguard") + _pb_bytes(7, graph)
            + _pb_bytes(8, opset))


class SpeakerEncoder:
    """The GE2E network; one instance serves every stream (stateless after construction).

    ``engine="onnx"`` (default) runs ONNX Runtime on a graph built in memory from
    the weights; ``engine="numpy"`` runs the same maths as a numpy time loop
    (slower, no ONNX Runtime involved; kept as an independent cross-check).
    """

    def __init__(self, state: dict[str, npt.NDArray[Any]], engine: str = "onnx",
                 intra_op_threads: int = 1) -> None:
        for name, shape in _EXPECTED_SHAPES.items():
            if name not in state:
                raise ModelError(f"GE2E weights lack {name}")
            if tuple(state[name].shape) != shape:
                raise ModelError(f"GE2E weight {name} has shape {tuple(state[name].shape)}, "
                                 f"expected {shape}")
            if not np.isfinite(state[name]).all():
                raise ModelError(f"GE2E weight {name} holds NaN or infinite values")
        if engine not in ("onnx", "numpy"):
            raise ValueError(f"unknown engine {engine!r}; use 'onnx' or 'numpy'")
        self.engine = engine
        self._session: Any = None
        if engine == "onnx":
            self._session = self._onnx_session(state, intra_op_threads)
        self._w_ih: list[Float32] = []
        self._w_hh: list[Float32] = []
        self._bias: list[Float32] = []
        for k in range(LAYERS):
            # Gate rows are [input, forget, cell, output]. Sigmoid(x) = (1 + tanh(x / 2)) / 2,
            # so halving the sigmoid gates' rows lets one tanh call evaluate all four gates.
            scale = np.full((4 * HIDDEN, 1), 0.5, dtype=np.float32)
            scale[2 * HIDDEN:3 * HIDDEN] = 1.0
            w_ih = np.asarray(state[f"lstm.weight_ih_l{k}"], np.float32) * scale
            w_hh = np.asarray(state[f"lstm.weight_hh_l{k}"], np.float32) * scale
            bias = (np.asarray(state[f"lstm.bias_ih_l{k}"], np.float32)
                    + np.asarray(state[f"lstm.bias_hh_l{k}"], np.float32)) * scale[:, 0]
            self._w_ih.append(np.ascontiguousarray(w_ih.T))
            self._w_hh.append(np.ascontiguousarray(w_hh.T))
            self._bias.append(bias.astype(np.float32))
        self._w_out = np.ascontiguousarray(np.asarray(state["linear.weight"], np.float32).T)
        self._b_out = np.asarray(state["linear.bias"], np.float32)

    @staticmethod
    def _onnx_session(state: dict[str, npt.NDArray[Any]], threads: int) -> Any:
        from streamguard.inference.onnx_model import cpu_session

        return cpu_session(encoder_onnx_bytes(state), threads=threads,
                           error="cannot build the GE2E encoder graph")

    @classmethod
    def load(cls, checkpoint: str | Path | None = None, engine: str = "onnx",
             intra_op_threads: int = 1) -> SpeakerEncoder:
        """Load from a resemblyzer-style checkpoint (default: the installed package's)."""
        path = Path(checkpoint) if checkpoint is not None else default_checkpoint()
        return cls(read_state_dict(path, key="model_state"), engine, intra_op_threads)

    def _lstm_layer(self, k: int, x: Float32) -> Float32:
        """One LSTM layer over (T, B, D) inputs; returns (T, B, 256) hidden states."""
        steps, batch, _ = x.shape
        # Input contributions for all time steps in one matrix product.
        pre = (x.reshape(steps * batch, -1) @ self._w_ih[k] + self._bias[k]).reshape(
            steps, batch, 4 * HIDDEN)
        w_hh = self._w_hh[k]
        h = np.zeros((batch, HIDDEN), np.float32)
        c = np.zeros((batch, HIDDEN), np.float32)
        out = np.empty((steps, batch, HIDDEN), np.float32)
        gates = np.empty((batch, 4 * HIDDEN), np.float32)
        for t in range(steps):
            np.matmul(h, w_hh, out=gates)
            gates += pre[t]
            np.tanh(gates, out=gates)
            sig = gates[:, :2 * HIDDEN]
            sig += 1.0
            sig *= 0.5
            i, f = gates[:, :HIDDEN], gates[:, HIDDEN:2 * HIDDEN]
            g, o = gates[:, 2 * HIDDEN:3 * HIDDEN], gates[:, 3 * HIDDEN:]
            c *= f
            c += i * g
            o += 1.0
            o *= 0.5
            np.multiply(o, np.tanh(c), out=out[t])
            h = out[t]
        return out

    def _run_numpy(self, mels: Float32) -> Float32:
        x = np.ascontiguousarray(mels.transpose(1, 0, 2))
        for k in range(LAYERS):
            x = self._lstm_layer(k, x)
        hidden: Float32 = np.maximum(x[-1] @ self._w_out + self._b_out, np.float32(0.0))
        return hidden

    def embed_partials(self, mels: Float32) -> Float32:
        """(B, 160, 40) mel frames → (B, 256) unit-length partial embeddings.

        Also the ``run_batch`` a :class:`~streamguard.inference.MicroBatcher` needs.
        """
        mels = np.asarray(mels, dtype=np.float32)
        if mels.ndim != 3 or mels.shape[1:] != (PARTIAL_FRAMES, N_MELS):
            raise ValueError(f"expected (B, {PARTIAL_FRAMES}, {N_MELS}) mels, got {mels.shape}")
        if len(mels) == 0:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        if self._session is not None:
            hidden = np.asarray(self._session.run(None, {"mels": mels})[0], dtype=np.float32)
        else:
            hidden = self._run_numpy(mels)
        return _l2_normalise(hidden)

    def embed_preprocessed(self, wav: Float32, rate: float = DEFAULT_RATE,
                           min_coverage: float = DEFAULT_MIN_COVERAGE) -> UtteranceEmbedding:
        """Embed audio that already went through :func:`~streamguard.speaker.mel.preprocess`."""
        wav = np.asarray(wav, dtype=np.float32)
        if len(wav) == 0:
            raise MediaError("no speech left to embed after silence trimming")
        partials = self.embed_partials(partial_mels(wav, rate, min_coverage))
        return UtteranceEmbedding(_l2_normalise(partials.mean(axis=0)), partials,
                                  len(wav) / 16000.0)

    def embed_utterance(self, wav: Float32, rate: float = DEFAULT_RATE,
                        min_coverage: float = DEFAULT_MIN_COVERAGE) -> UtteranceEmbedding:
        """Embed raw 16 kHz float audio: normalise level, trim silences, average partials."""
        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim != 1:
            raise MediaError(f"expected mono audio, got an array of shape {wav.shape}")
        if not np.isfinite(wav).all():
            raise MediaError("audio contains NaN or infinite samples")
        return self.embed_preprocessed(preprocess(wav), rate, min_coverage)


def embed_speaker(utterances: list[UtteranceEmbedding]) -> Float32:
    """A speaker's embedding from several utterances: normalised mean (SPEC §7)."""
    if not utterances:
        raise ValueError("no utterances to combine")
    return _l2_normalise(np.mean([u.embedding for u in utterances], axis=0).astype(np.float32))
