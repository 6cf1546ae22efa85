"""Graph nodes of format v2 (the binarized ViT): each reads named inputs, writes one output.

Activations between nodes (``N`` = batch; see ``docs/packed_format.md``, *Format v2*):

* ``u8_image``   uint8 (N, C, H, W): the engine input;
* ``real_image`` float32 (N, C, H, W);
* ``tokens``     float32 (N, T, D);
* ``bit_tokens`` uint64 (N, T, n_words(D)): packed signs, LSB-first, padding bits 0;
* ``vector``     float32 (N, D);
* ``scores``     float32 (N, classes): only the graph's output.

:class:`BinaryLinear` is the one binary op: an XNOR-popcount GEMM giving exact int32
pre-activations ``y``. :class:`BCLinear` (BinaryConnect) has the same packed 1-bit weights but
real input: a float32 GEMM with the weights unpacked to +-1. Everything else is float32 NumPy,
each operation rounded to float32 in the order written in the spec (no fused multiply-add).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from .bits import n_words, unpack_signs
from .graph_reference import _matmul
from .layers import THRESH_MAX, THRESH_MIN, _check_padding_bits
from .real_layers import _sgemm

__all__ = [
    "NODE_TYPES",
    "Attention",
    "BCLinear",
    "BinaryLinear",
    "LayerNorm",
    "Linear",
    "MeanTokens",
    "Node",
    "Normalize",
    "PatchEmbed",
    "Residual",
    "TShape",
]

#: Largest activation a node may produce, in values per sample (bounds what a hostile header
#: makes the engine allocate; attention counts its T x T scores per head).
MAX_VALUES = 1 << 24
F32 = np.float32


@dataclass(frozen=True)
class TShape:
    """Static shape of a node's output: ``kind`` as in the module docstring, per-sample dims."""

    kind: str
    dims: tuple[int, ...]

    def describe(self) -> str:
        return f"{self.kind}{list(self.dims)}"


def _f32(a: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    arr = np.ascontiguousarray(a, dtype=F32)
    if arr.shape != shape:
        raise ValueError(f"{what}: expected shape {shape}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}: non-finite values")
    return arr


def _int(v: Any, what: str, lo: int = 1) -> int:
    if not isinstance(v, int | np.integer) or isinstance(v, bool) or int(v) < lo:
        raise ValueError(f"{what} must be an integer >= {lo}, got {v!r}")
    return int(v)


def _need(s: TShape, kind: str, what: str, last: int | None = None) -> None:
    if s.kind != kind or (last is not None and s.dims[-1] != last):
        want = f"{kind}[..., {last}]" if last is not None else kind
        raise ValueError(f"{what} expects {want}, gets {s.describe()}")


@dataclass(eq=False)
class Node:
    """Base class: ``name``, ``inputs`` (names of earlier nodes or ``"input"``)."""

    op: ClassVar[str] = ""
    #: Array names in payload order, with the one dtype each must have.
    array_dtypes: ClassVar[dict[str, str]] = {}
    #: The keys ``params`` must hold, exactly.
    param_keys: ClassVar[tuple[str, ...]] = ()
    n_inputs: ClassVar[int] = 1

    name: str = ""
    inputs: tuple[str, ...] = ()

    def params(self) -> dict[str, Any]:
        return {}

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in self.array_dtypes if getattr(self, k) is not None}

    @classmethod
    def from_spec(cls, name: str, inputs: tuple[str, ...], params: dict[str, Any],
                  arrays: dict[str, np.ndarray]) -> Node:
        if set(arrays) != set(cls.array_dtypes) or set(params) != set(cls.param_keys):
            raise ValueError(f"{cls.op} needs params {list(cls.param_keys)} and arrays "
                             f"{list(cls.array_dtypes)}")
        return cls(name, inputs, **params, **arrays)

    def out_shape(self, ins: list[TShape]) -> TShape:
        raise NotImplementedError

    def forward(self, xs: list[np.ndarray], ops: Any, ints: list | None) -> np.ndarray:
        """The output; a binary node appends its int32 pre-activations to ``ints`` if given."""
        raise NotImplementedError


@dataclass(eq=False)
class Normalize(Node):
    """``(float32(u) / 255 - mean[c]) / std[c]`` on the uint8 image (torch's Normalize of the
    data module's ``u / 255``)."""

    op: ClassVar[str] = "normalize"
    array_dtypes: ClassVar[dict[str, str]] = {"mean": "<f4", "std": "<f4"}
    mean: np.ndarray = field(default_factory=lambda: np.zeros(1, F32))
    std: np.ndarray = field(default_factory=lambda: np.ones(1, F32))

    def __post_init__(self) -> None:
        self.mean = _f32(self.mean, (np.asarray(self.mean).size,), "normalize mean")
        self.std = _f32(self.std, self.mean.shape, "normalize std")
        if (self.std <= 0).any():
            raise ValueError("normalize: std must be > 0")

    def out_shape(self, ins: list[TShape]) -> TShape:
        _need(ins[0], "u8_image", "normalize")
        if ins[0].dims[0] != self.mean.size:
            raise ValueError(f"normalize has {self.mean.size} channels, input {ins[0].dims[0]}")
        return TShape("real_image", ins[0].dims)

    def forward(self, xs, ops, ints):
        x = xs[0].astype(F32)
        x /= F32(255.0)  # in place: one array, not three
        x -= self.mean[:, None, None]
        x /= self.std[:, None, None]
        return x


@dataclass(eq=False)
class PatchEmbed(Node):
    """Non-overlapping ``patch x patch`` conv (kernel = stride, no padding, floor: the
    remainder rows/columns are dropped) as a float32 GEMM, then ``+ pos``: tokens in row-major
    patch order, each patch flattened in ``(c, ky, kx)`` order."""

    op: ClassVar[str] = "patch_embed"
    array_dtypes: ClassVar[dict[str, str]] = {"weight": "<f4", "bias": "<f4", "pos": "<f4"}
    param_keys: ClassVar[tuple[str, ...]] = ("patch",)
    patch: int = 1
    weight: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), F32))
    bias: np.ndarray = field(default_factory=lambda: np.zeros(0, F32))
    pos: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), F32))

    def __post_init__(self) -> None:
        self.patch = _int(self.patch, "patch_embed patch")
        w = np.asarray(self.weight)
        if w.ndim != 2:
            raise ValueError("patch_embed: weight must be (dim, C * patch * patch)")
        self.weight = _f32(w, w.shape, "patch_embed weight")
        self.bias = _f32(self.bias, (w.shape[0],), "patch_embed bias")
        p = np.asarray(self.pos)
        self.pos = _f32(p, (p.shape[0] if p.ndim == 2 else -1, w.shape[0]), "patch_embed pos")
        self.weight_t = np.ascontiguousarray(self.weight.T)

    def params(self) -> dict[str, Any]:
        return {"patch": self.patch}

    def out_shape(self, ins: list[TShape]) -> TShape:
        _need(ins[0], "real_image", "patch_embed")
        c, h, w = ins[0].dims
        t = (h // self.patch) * (w // self.patch)
        if self.weight.shape[1] != c * self.patch**2 or self.pos.shape[0] != t or t == 0:
            raise ValueError(f"patch_embed weight/pos do not fit a {c}x{h}x{w} input")
        return TShape("tokens", (t, self.weight.shape[0]))

    def forward(self, xs, ops, ints):
        x = xs[0]
        n, c, h, w = x.shape
        p = self.patch
        gh, gw = h // p, w // p
        x = x[:, :, : gh * p, : gw * p].reshape(n, c, gh, p, gw, p).transpose(0, 2, 4, 1, 3, 5)
        cols = np.ascontiguousarray(x).reshape(n * gh * gw, c * p * p)
        y = _matmul(cols, self.weight_t)
        y += self.bias
        y = y.reshape(n, gh * gw, -1)
        y += self.pos
        return y


@dataclass(eq=False)
class LayerNorm(Node):
    """Over the last axis: ``mu = mean(x)``, ``var = mean((x - mu)^2)`` (biased),
    ``(x - mu) * (1 / sqrt(var + eps)) * weight + bias``."""

    op: ClassVar[str] = "layernorm"
    array_dtypes: ClassVar[dict[str, str]] = {"weight": "<f4", "bias": "<f4"}
    param_keys: ClassVar[tuple[str, ...]] = ("eps",)
    eps: float = 1e-5
    weight: np.ndarray = field(default_factory=lambda: np.ones(1, F32))
    bias: np.ndarray = field(default_factory=lambda: np.zeros(1, F32))

    def __post_init__(self) -> None:
        if not isinstance(self.eps, float | int) or isinstance(self.eps, bool) or not (
                0 < float(self.eps) < 1):
            raise ValueError(f"layernorm eps must be a number in (0, 1), got {self.eps!r}")
        self.weight = _f32(self.weight, (np.asarray(self.weight).size,), "layernorm weight")
        self.bias = _f32(self.bias, self.weight.shape, "layernorm bias")

    def params(self) -> dict[str, Any]:
        return {"eps": float(self.eps)}

    def out_shape(self, ins: list[TShape]) -> TShape:
        if ins[0].kind not in ("tokens", "vector") or ins[0].dims[-1] != self.weight.size:
            raise ValueError(f"layernorm({self.weight.size}) cannot take {ins[0].describe()}")
        return ins[0]

    def forward(self, xs, ops, ints):
        x = xs[0]
        out = ops.layer_norm(x.reshape(-1, x.shape[-1]), self.weight, self.bias, self.eps)
        return out.reshape(x.shape)


@dataclass(eq=False)
class BinaryLinear(Node):
    """XNOR-popcount linear map over the last axis of tokens.

    Input ``"real"`` (float32 tokens: bit = ``x >= 0``, so ``sign(0) = sign(-0) = +1``) or
    ``"bits"`` (packed tokens). ``y = K - 2 popcount(bits ^ w)`` (exact int32). Output
    ``"real"``: ``float32(y) * scale + bias`` (two roundings); ``"bits"``: bit =
    ``y >= thresh or y <= thresh_low`` (an increasing, decreasing or band-shaped function of
    ``y``: the exporter folds the following real ops and the next sign into it).
    """

    op: ClassVar[str] = "binary_linear"
    array_dtypes: ClassVar[dict[str, str]] = {
        "weight": "<u8", "scale": "<f4", "bias": "<f4", "thresh": "<i4", "thresh_low": "<i4"}
    in_features: int = 1
    real_input: bool = True
    weight: np.ndarray = field(default_factory=lambda: np.zeros((0, 1), np.uint64))
    scale: np.ndarray | None = None
    bias: np.ndarray | None = None
    thresh: np.ndarray | None = None
    thresh_low: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.in_features = _int(self.in_features, "binary_linear in_features")
        self.weight = np.ascontiguousarray(self.weight, dtype=np.uint64)
        if self.weight.ndim != 2 or self.weight.shape[1] != n_words(self.in_features):
            raise ValueError("binary_linear: weight must be (out_features, n_words(in_features))")
        _check_padding_bits(self.weight, 1, self.in_features, "binary_linear")
        n = self.out_features
        real = self.scale is not None and self.bias is not None
        bits = self.thresh is not None and self.thresh_low is not None
        if real == bits or (real and (self.thresh is not None or self.thresh_low is not None)) \
                or (bits and (self.scale is not None or self.bias is not None)):
            raise ValueError("binary_linear: give scale+bias (real output) or thresh+thresh_low")
        if real:
            self.scale = _f32(self.scale, (n,), "binary_linear scale")
            self.bias = _f32(self.bias, (n,), "binary_linear bias")
        else:
            self.thresh = np.ascontiguousarray(self.thresh, dtype=np.int32).reshape(-1)
            self.thresh_low = np.ascontiguousarray(self.thresh_low, dtype=np.int32).reshape(-1)
            if self.thresh.shape != (n,) or self.thresh_low.shape != (n,):
                raise ValueError(f"binary_linear: thresholds need shape ({n},)")

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    @property
    def outputs_bits(self) -> bool:
        return self.thresh is not None

    def params(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "input": "real" if self.real_input else "bits",
                "output": "bits" if self.outputs_bits else "real"}

    @classmethod
    def from_spec(cls, name, inputs, params, arrays):
        if set(params) != {"in_features", "out_features", "input", "output"}:
            raise ValueError("binary_linear params: in_features, out_features, input, output")
        if params["input"] not in ("real", "bits") or params["output"] not in ("real", "bits"):
            raise ValueError(f"bad input/output {params['input']!r}/{params['output']!r}")
        want = {"weight", "scale", "bias"} if params["output"] == "real" else {
            "weight", "thresh", "thresh_low"}
        if set(arrays) != want:
            raise ValueError(f"binary_linear with output {params['output']} needs {sorted(want)}")
        node = cls(name, inputs, in_features=params["in_features"],
                   real_input=params["input"] == "real", **arrays)
        if params["out_features"] != node.out_features:
            raise ValueError("out_features does not match the weight")
        return node

    def out_shape(self, ins: list[TShape]) -> TShape:
        _need(ins[0], "tokens" if self.real_input else "bit_tokens", "binary_linear",
              self.in_features)
        return TShape("bit_tokens" if self.outputs_bits else "tokens",
                      (*ins[0].dims[:-1], self.out_features))

    def _bits(self, x: np.ndarray, ops: Any) -> np.ndarray:
        rows = x.reshape(x.shape[0] * x.shape[1], -1)
        return ops.sign_pack(rows) if self.real_input else np.ascontiguousarray(rows)

    def integers(self, x: np.ndarray, ops: Any) -> np.ndarray:
        """int32 pre-activations (N, T, out) of real (sign taken) or packed input tokens."""
        y = ops.xnor_gemm(self._bits(x, ops), self.weight, self.in_features)
        return y.reshape(x.shape[0], x.shape[1], -1)

    @property
    def weight_t(self) -> np.ndarray:
        """The weights word-major (W, out), for the fused kernel (built on first use; the
        weights must not be modified in place after that)."""
        if getattr(self, "_wt", None) is None:
            self._wt = np.ascontiguousarray(self.weight.T)
        return self._wt

    def forward(self, xs, ops, ints):
        if ints is None and not self.outputs_bits:  # fused GEMM + affine, no int32 pass
            n, t = xs[0].shape[:2]
            z = ops.xnor_affine(self._bits(xs[0], ops), self.weight_t, self.in_features,
                                self.scale, self.bias)
            return z.reshape(n, t, -1)
        if ints is None:  # fused GEMM + band threshold
            n, t = xs[0].shape[:2]
            bits = ops.xnor_band(self._bits(xs[0], ops), self.weight_t, self.in_features,
                                 self.thresh, self.thresh_low)
            return bits.reshape(n, t, -1)
        y = self.integers(xs[0], ops)
        if ints is not None:
            ints.append(y)
        if self.outputs_bits:
            n, t, c = y.shape
            return ops.band_pack(y.reshape(n * t, c), self.thresh, self.thresh_low).reshape(
                n, t, -1)
        z = y.astype(F32) * self.scale
        z += self.bias
        return z


@dataclass(eq=False)
class BCLinear(Node):
    """BinaryConnect linear: real tokens (N, T, K) times +-1 weights (real activations, so no
    XNOR): ``y = x . w[j]``, a float32 GEMM with the packed weights unpacked to +-1 float32
    once (as :class:`~.real_layers.RealDense`), then ``y * scale[j]``, then ``+ bias[j]``;
    output ``"gelu"`` applies the exact (erf) GELU to that (the ViT's first MLP linear)."""

    op: ClassVar[str] = "bc_linear"
    array_dtypes: ClassVar[dict[str, str]] = {"weight": "<u8", "scale": "<f4", "bias": "<f4"}
    in_features: int = 1
    gelu: bool = False
    weight: np.ndarray = field(default_factory=lambda: np.zeros((0, 1), np.uint64))
    scale: np.ndarray = field(default_factory=lambda: np.zeros(0, F32))
    bias: np.ndarray = field(default_factory=lambda: np.zeros(0, F32))

    def __post_init__(self) -> None:
        self.in_features = _int(self.in_features, "bc_linear in_features")
        self.weight = np.ascontiguousarray(self.weight, dtype=np.uint64)
        if self.weight.ndim != 2 or self.weight.shape[1] != n_words(self.in_features):
            raise ValueError("bc_linear: weight must be (out_features, n_words(in_features))")
        _check_padding_bits(self.weight, 1, self.in_features, "bc_linear")
        self.scale = _f32(self.scale, (self.out_features,), "bc_linear scale")
        self.bias = _f32(self.bias, (self.out_features,), "bc_linear bias")
        self._pm1: np.ndarray | None = None

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    def params(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "output": "gelu" if self.gelu else "real"}

    @classmethod
    def from_spec(cls, name, inputs, params, arrays):
        if set(params) != {"in_features", "out_features", "output"} or set(arrays) != set(
                cls.array_dtypes):
            raise ValueError("bc_linear needs params in_features, out_features, output and "
                             "arrays weight, scale, bias")
        if params["output"] not in ("real", "gelu"):
            raise ValueError(f"bad output {params['output']!r}")
        node = cls(name, inputs, in_features=params["in_features"],
                   gelu=params["output"] == "gelu", **arrays)
        if params["out_features"] != node.out_features:
            raise ValueError("out_features does not match the weight")
        return node

    def out_shape(self, ins: list[TShape]) -> TShape:
        _need(ins[0], "tokens", "bc_linear", self.in_features)
        return TShape("tokens", (*ins[0].dims[:-1], self.out_features))

    @property
    def pm1(self) -> np.ndarray:
        """The weights as +-1 float32 (in_features, out_features), built on first use (the
        weights must not be modified in place after that)."""
        if self._pm1 is None:
            w = unpack_signs(self.weight, self.in_features, F32)
            self._pm1 = np.ascontiguousarray(w.T)
        return self._pm1

    def preactivations(self, x: np.ndarray) -> np.ndarray:
        """float32 ``y`` (N, T, out) of real tokens (N, T, K)."""
        n, t, k = x.shape
        rows = np.array(x, dtype=F32, order="C").reshape(n * t, k)  # own copy for torch
        return _sgemm(rows, self.pm1).reshape(n, t, -1)

    def forward(self, xs, ops, ints):
        y = self.preactivations(xs[0])
        if ints is not None:
            ints.append(y)
        z = y * self.scale
        z += self.bias
        return _gelu(z) if self.gelu else z


def _gelu(z: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU in float32: torch's own kernel, so the same values as the model's."""
    import torch

    return torch.nn.functional.gelu(torch.from_numpy(z)).numpy()


@dataclass(eq=False)
class Attention(Node):
    """Multi-head softmax attention on packed ``q, k, v`` tokens (N, T, 3 D) (channel
    ``s D + h (D / heads) + e`` is part ``s`` (q, k, v), head ``h``, element ``e``):
    ``softmax((q k^T) * float32(1 / sqrt(D / heads))) v`` per head (softmax: subtract the row
    max, exp, divide by the row sum), heads concatenated back to (N, T, D)."""

    op: ClassVar[str] = "attention"
    param_keys: ClassVar[tuple[str, ...]] = ("heads",)
    heads: int = 1

    def __post_init__(self) -> None:
        self.heads = _int(self.heads, "attention heads")

    def params(self) -> dict[str, Any]:
        return {"heads": self.heads}

    def out_shape(self, ins: list[TShape]) -> TShape:
        _need(ins[0], "tokens", "attention")
        t, d3 = ins[0].dims
        if d3 % (3 * self.heads):
            raise ValueError(f"attention: {d3} channels are not 3 x heads x head_dim")
        if self.heads * t * t > MAX_VALUES:
            raise ValueError("attention: too many tokens")
        return TShape("tokens", (t, d3 // 3))

    def forward(self, xs, ops, ints):
        return ops.attention(xs[0], self.heads)


@dataclass(eq=False)
class Residual(Node):
    """``inputs[0] + gamma * inputs[1]`` (LayerScale residual; product, then sum, each
    rounded to float32)."""

    op: ClassVar[str] = "residual"
    array_dtypes: ClassVar[dict[str, str]] = {"gamma": "<f4"}
    n_inputs: ClassVar[int] = 2
    gamma: np.ndarray = field(default_factory=lambda: np.ones(1, F32))

    def __post_init__(self) -> None:
        self.gamma = _f32(self.gamma, (np.asarray(self.gamma).size,), "residual gamma")

    def out_shape(self, ins: list[TShape]) -> TShape:
        _need(ins[0], "tokens", "residual", self.gamma.size)
        if ins[1] != ins[0]:
            raise ValueError(f"residual adds {ins[0].describe()} and {ins[1].describe()}")
        return ins[0]

    def forward(self, xs, ops, ints):
        x, y = xs
        d = x.shape[-1]
        return ops.residual(x.reshape(-1, d), y.reshape(-1, d), self.gamma).reshape(x.shape)


@dataclass(eq=False)
class MeanTokens(Node):
    """Mean over the tokens: (N, T, D) -> (N, D) (float32 sum / T)."""

    op: ClassVar[str] = "mean_tokens"

    def out_shape(self, ins: list[TShape]) -> TShape:
        _need(ins[0], "tokens", "mean_tokens")
        return TShape("vector", ins[0].dims[-1:])

    def forward(self, xs, ops, ints):
        return ops.mean_tokens(xs[0])


@dataclass(eq=False)
class Linear(Node):
    """Real (float32) dense head: ``x @ weight^T + bias``, the class scores."""

    op: ClassVar[str] = "linear"
    array_dtypes: ClassVar[dict[str, str]] = {"weight": "<f4", "bias": "<f4"}
    weight: np.ndarray = field(default_factory=lambda: np.zeros((1, 1), F32))
    bias: np.ndarray = field(default_factory=lambda: np.zeros(1, F32))

    def __post_init__(self) -> None:
        w = np.asarray(self.weight)
        if w.ndim != 2:
            raise ValueError("linear: weight must be (classes, in_features)")
        self.weight = _f32(w, w.shape, "linear weight")
        self.bias = _f32(self.bias, (w.shape[0],), "linear bias")
        self.weight_t = np.ascontiguousarray(self.weight.T)  # not copied on every call

    def out_shape(self, ins: list[TShape]) -> TShape:
        _need(ins[0], "vector", "linear", self.weight.shape[1])
        return TShape("scores", (self.weight.shape[0],))

    def forward(self, xs, ops, ints):
        y = _matmul(xs[0], self.weight_t)
        y += self.bias
        return y


NODE_TYPES: dict[str, type[Node]] = {
    cls.op: cls
    for cls in (Normalize, PatchEmbed, LayerNorm, BinaryLinear, BCLinear, Attention, Residual,
                MeanTokens, Linear)
}


def band_thresholds(fires: np.ndarray, lo: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(thresh, thresh_low)`` int32 with ``fires[y - lo, j] == (y >= thresh[j] or
    y <= thresh_low[j])`` for every row, or None if some column is not of that form.

    ``fires``: bool (L, channels), row ``i`` for ``y = lo + i``. Canonical sentinels: a column
    that never fires is ``(THRESH_MAX, THRESH_MIN)``, one that always fires ``(THRESH_MIN,
    THRESH_MIN)``.
    """
    n_y, c = fires.shape
    ys = np.arange(lo, lo + n_y, dtype=np.int64)[:, None]
    # suffix of ones from the top, prefix of ones from the bottom
    top = np.flip(np.cumprod(np.flip(fires, 0), axis=0), 0).astype(bool)
    bottom = np.cumprod(fires, axis=0).astype(bool)
    hi = np.where(top.any(0), lo + np.argmax(top, axis=0), THRESH_MAX)
    low = np.where(bottom.any(0), lo + n_y - 1 - np.argmax(np.flip(bottom, 0), axis=0),
                   THRESH_MIN)
    every = fires.all(0)
    hi = np.where(every, THRESH_MIN, hi)
    low = np.where(every, THRESH_MIN, low)
    if not np.array_equal((ys >= hi) | (ys <= low), fires):
        return None
    return hi.astype(np.int32), low.astype(np.int32)
