"""Packed layers: what the engine runs and what the file format stores.

Activations between layers (see ``docs/packed_format.md``):

* the engine input is ``uint8`` pixels in torch layout (N, C, H, W) (or any (N, ...) shape for a
  model that starts with :class:`Flatten`);
* binary images are **NHWC** with channels packed into words: ``uint64`` (N, H, W, n_words(C));
* flat binary vectors are ``uint64`` (N, words) with ``features`` real bits; after a flatten of a
  binary image the words are pixel-major (H, W, channel words), each pixel's last word padded
  with 0 bits (the exporter packs the following dense weights in the same layout);
* the last layer gives float32 scores (N, classes).

Every compute layer (:class:`Dense`, :class:`Conv2d`) computes integer pre-activations ``y``
(exact: ``K - 2 popcount(a ^ w)`` on bits; on uint8 input an int8 GEMM (dense) or integer sums
(conv)) and then either thresholds them into packed bits for the next layer
(``thresh``/``flip``: bit = ``y >= t``, or ``y <= t`` where ``flip``) or maps them to scores
(``scale * y + shift``, float32). Convs run as tap sweeps (:class:`~.reference.ConvTaps`, a
layout derived from the stored weights on first use), with a following non-overlapping max-pool
fused in by the engine.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .bits import n_words, valid_mask
from .reference import ConvTaps, Int8Weights, conv_taps, int8_weights, or_pool

__all__ = [
    "Act",
    "Conv2d",
    "Dense",
    "Flatten",
    "Layer",
    "MaxPool2d",
    "THRESH_MAX",
    "THRESH_MIN",
    "im2col_bits",
    "im2col_uint8",
    "infer_shapes",
    "input_shape_of",
    "or_pool",
]

#: Threshold sentinels: with ``flip=False`` ``THRESH_MIN`` means "always 1" and ``THRESH_MAX``
#: "always 0"; with ``flip=True`` the reverse. Pre-activations are bounded by 255 K < 2^31 - 1.
THRESH_MIN = np.iinfo(np.int32).min
THRESH_MAX = np.iinfo(np.int32).max


@dataclass
class Act:
    """An activation between layers.

    ``kind``: ``"u8"`` (uint8, any shape after the batch axis; image = (N, C, H, W)),
    ``"bits_image"`` (uint64 (N, H, W, words), ``channels`` real bits per pixel),
    ``"bits_flat"`` (uint64 (N, words), ``features`` real bits; made by a flatten,
    ``channels`` real bits per pixel word), ``"real_flat"`` (float32
    (N, features), BinaryConnect activations), ``"scores"`` (float32 (N, C)).
    """

    kind: str
    data: np.ndarray
    channels: int = 0
    features: int = 0


@dataclass
class Shape:
    """Static shape of an activation (for validation at load time)."""

    kind: str  # "u8_image", "u8_flat", "bits_image", "bits_flat", "real_image", "real_flat",
    # "scores"; real_image dims are (C, H, W) (NCHW float32, torch's layout)
    dims: tuple[int, ...]  # u8_image: (C, H, W); bits_image: (H, W, C); flat: (K,)
    words: int = 0  # words per row (flat) or per pixel (image)
    image: tuple[int, int, int] | None = None  # bits_flat made by flattening (H, W, C) bits

    def describe(self) -> str:
        return f"{self.kind}{list(self.dims)}"


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, int | np.integer):
        return int(v), int(v)
    t = tuple(int(x) for x in v)
    if len(t) != 2:
        raise ValueError(f"expected an int or a pair, got {v!r}")
    return t  # type: ignore[return-value]


def _quad(v: Any) -> tuple[int, int, int, int]:
    t = tuple(int(x) for x in v)
    if len(t) != 4 or min(t) < 0:
        raise ValueError(f"padding must be (top, bottom, left, right) >= 0, got {v!r}")
    return t  # type: ignore[return-value]


def _check_padding_bits(weight: np.ndarray, groups: int, bits: int, what: str) -> None:
    """Each row of ``weight`` is ``groups`` runs of ``n_words(bits)`` words whose bits at and
    above ``bits`` (per run) must be 0: set padding bits would count in ``popcount(a ^ w)``."""
    mask = valid_mask(bits)
    rows = weight.reshape(weight.shape[0], groups, mask.size)
    if np.any(rows & ~mask):
        raise ValueError(f"{what}: weight words have padding bits set (must be 0)")


# -- data movement (im2col: the tests' oracle for the conv kernels) ----------------------------


def im2col_bits(
    x: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int, int, int],
    pad_word: np.ndarray,
) -> tuple[np.ndarray, int, int]:
    """Gather packed patches of an NHWC packed image ``x`` (N, H, W, Wc).

    Returns ``(patches, Ho, Wo)`` with ``patches`` uint64 (N * Ho * Wo, kh * kw * Wc) in
    (kh, kw, channel word) order; out-of-image pixels are ``pad_word`` (Wc,) (all-ones = +1).
    """
    n, h, w, wc = x.shape
    kh, kw = kernel
    sh, sw = stride
    pt, pb, pl, pr = padding
    hp, wp = h + pt + pb, w + pl + pr
    ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
    if ho <= 0 or wo <= 0:
        raise ValueError(f"kernel {kernel} larger than padded input {hp}x{wp}")
    if any(padding):
        xp = np.empty((n, hp, wp, wc), dtype=x.dtype)
        xp[...] = pad_word
        xp[:, pt : pt + h, pl : pl + w] = x
    else:
        xp = x
    win = sliding_window_view(xp, (kh, kw), axis=(1, 2))  # (n, hp-kh+1, wp-kw+1, wc, kh, kw)
    win = win[:, : (ho - 1) * sh + 1 : sh, : (wo - 1) * sw + 1 : sw]
    patches = np.ascontiguousarray(win.transpose(0, 1, 2, 4, 5, 3)).reshape(n * ho * wo, -1)
    return patches, ho, wo


def im2col_uint8(
    x: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int, int, int],
) -> tuple[np.ndarray, int, int]:
    """Patches of a uint8 NCHW image, zero padded: (N * Ho * Wo, kh * kw * C) in (kh, kw, c)
    order (the exporter flattens first-layer conv weights the same way)."""
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    return im2col_bits(nhwc, kernel, stride, padding, np.zeros(nhwc.shape[-1], dtype=np.uint8))


# -- layers ----------------------------------------------------------------------------------


class Layer:
    """Base class; subclasses are dataclasses registered in :data:`LAYER_TYPES`."""

    type_name: ClassVar[str] = ""
    array_names: ClassVar[tuple[str, ...]] = ()

    def params(self) -> dict[str, Any]:
        """JSON-serialisable scalar parameters."""
        raise NotImplementedError

    def arrays(self) -> dict[str, np.ndarray]:
        """Named arrays stored in the payload (absent optional arrays are omitted)."""
        out = {}
        for name in self.array_names:
            v = getattr(self, name)
            if v is not None:
                out[name] = v
        return out

    @classmethod
    def from_spec(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> Layer:
        raise NotImplementedError

    def out_shape(self, s: Shape) -> Shape:
        raise NotImplementedError

    def forward(self, a: Act, ops: Any, want_int: bool) -> tuple[Act, np.ndarray | None]:
        """Run the layer; returns the output and (if ``want_int``) the int pre-activations."""
        raise NotImplementedError

    def runner(self, ops: Any, a: Act, **kwargs: Any) -> Callable[[np.ndarray], np.ndarray] | None:
        """The forward pass (no pre-activations) prepared for inputs shaped like ``a``: a
        callable from the input array to the output array, or None where this layer or
        backend has none (the engine then runs :meth:`forward`)."""
        return None


@dataclass(eq=False)
class _Compute(Layer):
    """Shared parts of Dense/Conv2d: the output stage (threshold bits or affine scores)."""

    thresh: np.ndarray | None = None  # int32 (out,)
    flip: np.ndarray | None = None  # bool (out,)
    scale: np.ndarray | None = None  # float32 (out,)
    shift: np.ndarray | None = None  # float32 (out,)

    @property
    def outputs_bits(self) -> bool:
        return self.thresh is not None

    def _check_output_stage(self, n_out: int) -> None:
        has_t = self.thresh is not None and self.flip is not None
        has_a = self.scale is not None and self.shift is not None
        if has_t == has_a:
            raise ValueError(
                f"{self.type_name}: give exactly one output stage, thresh+flip or scale+shift"
            )
        if has_t:
            self.thresh = np.ascontiguousarray(self.thresh, dtype=np.int32).reshape(-1)
            self.flip = np.ascontiguousarray(self.flip, dtype=np.bool_).reshape(-1)
            arrs = (self.thresh, self.flip)
        else:
            self.scale = np.ascontiguousarray(self.scale, dtype=np.float32).reshape(-1)
            self.shift = np.ascontiguousarray(self.shift, dtype=np.float32).reshape(-1)
            arrs = (self.scale, self.shift)
        for arr in arrs:
            if arr.shape != (n_out,):
                raise ValueError(f"{self.type_name}: output stage arrays need shape ({n_out},)")

    def _check_spec(self, params: dict[str, Any], n_out_key: str) -> None:
        """The redundant params of a file agree with its arrays."""
        output = "bits" if self.outputs_bits else "scores"
        if params["output"] != output or params[n_out_key] != self.weight.shape[0]:  # type: ignore[attr-defined]
            raise ValueError(f"params output/{n_out_key} do not match the arrays")

    def _finish(self, y: np.ndarray, ops: Any) -> np.ndarray:
        """Apply the output stage to int32 (M, out) pre-activations."""
        if self.thresh is not None:
            return ops.threshold_pack(y, self.thresh, self.flip)
        out = np.multiply(y, self.scale, dtype=np.float32)  # y as float32, times scale
        out += self.shift
        return out


@dataclass(eq=False)
class Dense(_Compute):
    """Fully connected layer on packed bits or on uint8 input (bit planes).

    ``weight``: uint64 (out_features, words), packed +-1 rows laid out like the flattened input
    (words >= n_words(in_features)); ``in_features`` real connections K.
    """

    type_name: ClassVar[str] = "dense"
    array_names: ClassVar[tuple[str, ...]] = ("weight", "thresh", "flip", "scale", "shift")

    weight: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.uint64))
    in_features: int = 0
    uint8_input: bool = False
    _int8: Int8Weights | None = field(default=None, init=False, repr=False)
    _compact: dict[int, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.weight = np.ascontiguousarray(self.weight, dtype=np.uint64)
        if self.weight.ndim != 2:
            raise ValueError("dense: weight must be 2-D (out_features, words)")
        if self.uint8_input and self.weight.shape[1] != n_words(self.in_features):
            raise ValueError("dense: uint8-input weight must have n_words(in_features) words")
        if self.weight.shape[1] < n_words(self.in_features):
            raise ValueError("dense: weight has fewer words than in_features needs")
        self._check_output_stage(self.out_features)

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    def params(self) -> dict[str, Any]:
        return {
            "in_features": int(self.in_features),
            "out_features": self.out_features,
            "uint8_input": bool(self.uint8_input),
            "output": "bits" if self.outputs_bits else "scores",
        }

    @classmethod
    def from_spec(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> Dense:
        layer = cls(
            weight=arrays["weight"],
            in_features=int(params["in_features"]),
            uint8_input=bool(params["uint8_input"]),
            thresh=arrays.get("thresh"),
            flip=arrays.get("flip"),
            scale=arrays.get("scale"),
            shift=arrays.get("shift"),
        )
        layer._check_spec(params, "out_features")
        return layer

    def out_shape(self, s: Shape) -> Shape:
        if self.uint8_input:
            ok = s.kind == "u8_flat" and s.dims == (self.in_features,)
        else:
            ok = s.kind == "bits_flat" and s.dims == (self.in_features,)
            ok = ok and s.words == self.weight.shape[1]
        if not ok:
            want = "u8_flat" if self.uint8_input else f"bits_flat ({self.weight.shape[1]} words)"
            raise ValueError(
                f"dense expects {want}[{self.in_features}], gets {s.describe()} ({s.words} words)"
            )
        if s.image is not None and not self.uint8_input:  # per-pixel words after a flatten
            h, w, c = s.image
            _check_padding_bits(self.weight, h * w, c, "dense")
        else:
            _check_padding_bits(self.weight, 1, self.in_features, "dense")
        n = self.out_features
        if self.outputs_bits:
            return Shape("bits_flat", (n,), n_words(n))
        return Shape("scores", (n,))

    @property
    def int8(self) -> Int8Weights:
        """The uint8-input layer's weights as int8 (K, out) for the integer GEMM (built on
        first use; the weights must not be modified in place after that)."""
        if self._int8 is None:
            self._int8 = int8_weights(self.weight, self.in_features)
        return self._int8

    def forward(self, a: Act, ops: Any, want_int: bool) -> tuple[Act, np.ndarray | None]:
        if self.uint8_input and self.outputs_bits and not want_int:
            y = None
            out = ops.uint8_gemm_threshold(a.data, self.int8, self.thresh, self.flip)
        elif self.uint8_input:
            y = ops.uint8_gemm(a.data, self.int8)
            out = self._finish(y, ops)
        elif self.outputs_bits and not want_int:
            y = None
            out = ops.xnor_gemm_threshold(
                a.data, self.weight, self.in_features, self.thresh, self.flip
            )
        else:
            y = ops.xnor_gemm(a.data, self.weight, self.in_features)
            out = self._finish(y, ops)
        n = self.out_features
        if self.outputs_bits:
            return Act("bits_flat", out, features=n), y
        return Act("scores", out), y

    def runner(self, ops: Any, a: Act, **kwargs: Any) -> Callable[[np.ndarray], np.ndarray] | None:
        m = a.data.shape[0]
        if self.uint8_input and self.outputs_bits:
            if hasattr(ops, "uint8_gemm_threshold_runner"):
                return ops.uint8_gemm_threshold_runner(m, self.int8, self.thresh, self.flip)
            return lambda u: ops.uint8_gemm_threshold(u, self.int8, self.thresh, self.flip)
        if self.uint8_input:
            return lambda u: self._finish(ops.uint8_gemm(u, self.int8), ops)
        if not hasattr(ops, "xnor_gemm_runner"):
            return None
        c, words = a.channels, a.data.shape[1]
        if 0 < c < 64 and words * c == self.in_features:  # a flatten's pixel words, compacted
            compact = ops.compact_pixels_runner(m, words, c)
            gemm = self._gemm_runner(ops, m, self._compact_weight(ops, c))
            return lambda x: gemm(compact(x))
        return self._gemm_runner(ops, m, self.weight)

    def _gemm_runner(self, ops: Any, m: int, weight: np.ndarray) -> Callable:
        k = self.in_features
        if self.outputs_bits:
            return ops.xnor_gemm_threshold_runner(m, weight, k, self.thresh, self.flip)
        if self.thresh is None:  # scores: GEMM, scale and shift in one kernel
            return ops.xnor_scores_runner(m, weight, k, self.scale, self.shift)
        gemm = ops.xnor_gemm_runner(m, weight, k)
        return lambda x: self._finish(gemm(x), ops)

    def _compact_weight(self, ops: Any, c: int) -> np.ndarray:
        """The weight rows with ``c`` bits per pixel word, compacted as the runner's input."""
        if c not in self._compact:
            rows, words = self.weight.shape
            self._compact[c] = ops.compact_pixels_runner(rows, words, c)(self.weight)
        return self._compact[c]


@dataclass(eq=False)
class Conv2d(_Compute):
    """2-D convolution on packed NHWC bits (+1 padding) or on a uint8 image (0 padding).

    ``weight``: uint64 (out_channels, words). Binary input: words = kh * kw * n_words(C), each
    kernel position's channels packed in their own words, (kh, kw, word) order. uint8 input:
    the (kh, kw, c)-ordered kernel of K = kh * kw * C values packed as one row of n_words(K).
    ``padding`` is (top, bottom, left, right). The kernels run on :attr:`taps`, a layout of the
    same bits (narrow channels: several pixels per word) built from ``weight``.
    """

    type_name: ClassVar[str] = "conv2d"
    array_names: ClassVar[tuple[str, ...]] = ("weight", "thresh", "flip", "scale", "shift")

    weight: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.uint64))
    in_channels: int = 0
    kernel: tuple[int, int] = (3, 3)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (1, 1, 1, 1)
    uint8_input: bool = False
    _taps: ConvTaps | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.weight = np.ascontiguousarray(self.weight, dtype=np.uint64)
        self.kernel = _pair(self.kernel)
        self.stride = _pair(self.stride)
        self.padding = _quad(self.padding)
        if min(self.kernel) < 1 or min(self.stride) < 1 or self.in_channels < 1:
            raise ValueError("conv2d: kernel, stride and in_channels must be >= 1")
        if self.weight.ndim != 2 or self.weight.shape[1] != self.words:
            raise ValueError(
                f"conv2d: weight must be (out_channels, {self.words}), got {self.weight.shape}"
            )
        self._check_output_stage(self.out_channels)

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    @property
    def fan_in(self) -> int:
        return self.kernel[0] * self.kernel[1] * self.in_channels

    @property
    def words(self) -> int:
        if self.uint8_input:
            return n_words(self.fan_in)
        return self.kernel[0] * self.kernel[1] * n_words(self.in_channels)

    def params(self) -> dict[str, Any]:
        return {
            "in_channels": int(self.in_channels),
            "out_channels": self.out_channels,
            "kernel": list(self.kernel),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "uint8_input": bool(self.uint8_input),
            "output": "bits" if self.outputs_bits else "scores",
        }

    @classmethod
    def from_spec(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> Conv2d:
        layer = cls(
            weight=arrays["weight"],
            in_channels=int(params["in_channels"]),
            kernel=tuple(params["kernel"]),
            stride=tuple(params["stride"]),
            padding=tuple(params["padding"]),
            uint8_input=bool(params["uint8_input"]),
            thresh=arrays.get("thresh"),
            flip=arrays.get("flip"),
            scale=arrays.get("scale"),
            shift=arrays.get("shift"),
        )
        layer._check_spec(params, "out_channels")
        return layer

    def _out_hw(self, h: int, w: int) -> tuple[int, int]:
        pt, pb, pl, pr = self.padding
        ho = (h + pt + pb - self.kernel[0]) // self.stride[0] + 1
        wo = (w + pl + pr - self.kernel[1]) // self.stride[1] + 1
        if ho <= 0 or wo <= 0:
            raise ValueError(f"conv2d: kernel {self.kernel} does not fit a {h}x{w} input")
        return ho, wo

    def out_shape(self, s: Shape) -> Shape:
        if self.uint8_input:
            if s.kind != "u8_image" or s.dims[0] != self.in_channels:
                raise ValueError(
                    f"conv2d expects a uint8 image with {self.in_channels} channels, "
                    f"gets {s.describe()}"
                )
            h, w = s.dims[1], s.dims[2]
        else:
            if s.kind != "bits_image" or s.dims[2] != self.in_channels:
                raise ValueError(
                    f"conv2d expects a binary image with {self.in_channels} channels, "
                    f"gets {s.describe()}"
                )
            h, w = s.dims[0], s.dims[1]
        ho, wo = self._out_hw(h, w)
        if self.uint8_input:
            _check_padding_bits(self.weight, 1, self.fan_in, "conv2d")
        else:
            _check_padding_bits(self.weight, self.kernel[0] * self.kernel[1], self.in_channels,
                                "conv2d")
        if not self.outputs_bits:
            raise ValueError("conv2d as the last layer (scores) is not supported")
        return Shape("bits_image", (ho, wo, self.out_channels), n_words(self.out_channels))

    @property
    def taps(self) -> ConvTaps:
        """The weights as taps over source planes (built on first use; the weights must not be
        modified in place after that)."""
        if self._taps is None:
            self._taps = conv_taps(self.weight, self.in_channels, self.kernel, self.uint8_input)
        return self._taps

    def forward(
        self, a: Act, ops: Any, want_int: bool, pool: tuple[int, int] = (1, 1)
    ) -> tuple[Act, np.ndarray | None]:
        """``pool``: OR-pool the output bits with kernel = stride ``pool`` (fused unless
        ``want_int``)."""
        conv = ops.uint8_conv2d if self.uint8_input else ops.binary_conv2d
        args = (a.data, self.taps, self.stride, self.padding)
        if not want_int:
            bits = conv(*args, self.thresh, self.flip, pool)
            return Act("bits_image", bits, channels=self.out_channels), None
        y = conv(*args)  # (N, Ho, Wo, out)
        n, ho, wo, co = y.shape
        bits = ops.threshold_pack(y.reshape(-1, co), self.thresh, self.flip).reshape(n, ho, wo, -1)
        if pool != (1, 1):
            bits = or_pool(bits, pool, pool, (0, 0))
        return Act("bits_image", bits, channels=co), y.transpose(0, 3, 1, 2)

    def runner(
        self, ops: Any, a: Act, pool: tuple[int, int] = (1, 1), **kwargs: Any
    ) -> Callable[[np.ndarray], np.ndarray] | None:
        name = "uint8_conv2d_runner" if self.uint8_input else "binary_conv2d_runner"
        make = getattr(ops, name, None)
        if make is None:
            return None
        return make(a.data.shape, self.taps, self.stride, self.padding, self.thresh, self.flip,
                    pool)


@dataclass(eq=False)
class MaxPool2d(Layer):
    """Max-pool of a binary image = bitwise OR of packed words over each window (floor mode)."""

    type_name: ClassVar[str] = "maxpool2d"

    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        self.kernel = _pair(self.kernel)
        self.stride = _pair(self.stride)
        self.padding = _pair(self.padding)
        if min(self.kernel) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError("maxpool2d: kernel and stride must be >= 1, padding >= 0")
        # torch's rule: a window never lies wholly in the padding (whose fill, bit 0 = -1,
        # would then be the output instead of torch's -inf)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel, strict=True)):
            raise ValueError("maxpool2d: padding must be at most half the kernel")

    def params(self) -> dict[str, Any]:
        return {
            "kernel": list(self.kernel),
            "stride": list(self.stride),
            "padding": list(self.padding),
        }

    @classmethod
    def from_spec(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> MaxPool2d:
        return cls(tuple(params["kernel"]), tuple(params["stride"]), tuple(params["padding"]))

    def out_shape(self, s: Shape) -> Shape:
        if s.kind != "bits_image":
            raise ValueError(f"maxpool2d needs a binary image, gets {s.describe()}")
        h, w, c = s.dims
        ho = (h + 2 * self.padding[0] - self.kernel[0]) // self.stride[0] + 1
        wo = (w + 2 * self.padding[1] - self.kernel[1]) // self.stride[1] + 1
        if ho <= 0 or wo <= 0:
            raise ValueError(f"maxpool2d: kernel {self.kernel} does not fit {h}x{w}")
        return Shape("bits_image", (ho, wo, c), s.words)

    def forward(self, a: Act, ops: Any, want_int: bool) -> tuple[Act, np.ndarray | None]:
        out = or_pool(a.data, self.kernel, self.stride, self.padding)
        return Act("bits_image", out, channels=a.channels), None


@dataclass(eq=False)
class Flatten(Layer):
    """Flatten: uint8 input in torch (C, H, W) order; binary images pixel-major (H, W, words)."""

    type_name: ClassVar[str] = "flatten"

    def params(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_spec(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> Flatten:
        return cls()

    def out_shape(self, s: Shape) -> Shape:
        if s.kind in ("u8_image", "u8_flat"):
            return Shape("u8_flat", (math.prod(s.dims),))
        if s.kind == "bits_image":
            h, w, c = s.dims
            return Shape("bits_flat", (h * w * c,), h * w * s.words, image=(h, w, c))
        if s.kind == "bits_flat":
            return s
        if s.kind == "real_image":
            return Shape("real_flat", (math.prod(s.dims),))
        raise ValueError(f"flatten cannot follow {s.describe()}")

    def forward(self, a: Act, ops: Any, want_int: bool) -> tuple[Act, np.ndarray | None]:
        n = a.data.shape[0]
        if a.kind in ("u8", "real_image"):
            kind = "u8" if a.kind == "u8" else "real_flat"
            return Act(kind, np.ascontiguousarray(a.data).reshape(n, -1)), None
        if a.kind == "bits_image":
            _, h, w, _ = a.data.shape
            flat = np.ascontiguousarray(a.data).reshape(n, -1)
            # channels: the real bits per pixel word, which a dense runner may compact
            return Act("bits_flat", flat, channels=a.channels, features=h * w * a.channels), None
        return a, None

    def runner(self, ops: Any, a: Act, **kwargs: Any) -> Callable[[np.ndarray], np.ndarray] | None:
        if a.kind not in ("u8", "bits_image", "bits_flat"):
            return None
        n = a.data.shape[0]
        return lambda x: x.reshape(n, -1)  # runners pass C-contiguous arrays: a view


#: Largest activation a file may describe, in values per sample: bounds what a corrupt or
#: hostile header can make the engine allocate (the suite's largest is 28*28*16 bits).
MAX_ACTIVATION = 1 << 24


def infer_shapes(layers: list[Layer], input_shape: tuple[int, ...]) -> list[Shape]:
    """Static shapes of the input and of every layer's output; ``ValueError`` if the layers do
    not chain, a weight has padding bits set, an activation exceeds :data:`MAX_ACTIVATION`, or
    anything but the last layer produces scores."""
    s = input_shape_of(input_shape)
    shapes = [s]
    for i, layer in enumerate(layers):
        try:
            s = layer.out_shape(s)
        except ValueError as e:
            raise ValueError(f"layer {i} ({layer.type_name}): {e}") from None
        if math.prod(s.dims) > MAX_ACTIVATION:
            raise ValueError(f"layer {i} ({layer.type_name}): output {s.describe()} too large")
        if s.kind == "scores" and i != len(layers) - 1:
            raise ValueError(f"layer {i} produces scores but is not the last layer")
        shapes.append(s)
    if shapes[-1].kind != "scores":
        raise ValueError("the last layer must produce scores (a dense layer with scale/shift)")
    return shapes


def input_shape_of(input_shape: tuple[int, ...]) -> Shape:
    """The static :class:`Shape` of the engine input (uint8 (C, H, W) or flat (K,))."""
    dims = tuple(int(d) for d in input_shape)
    if min(dims, default=0) < 1 or math.prod(dims) > MAX_ACTIVATION:
        raise ValueError(f"input_shape {input_shape} is empty or too large")
    if len(dims) == 3:
        return Shape("u8_image", dims)
    if len(dims) == 1:
        return Shape("u8_flat", dims)
    raise ValueError(f"input_shape must be (C, H, W) or (K,), got {input_shape}")
