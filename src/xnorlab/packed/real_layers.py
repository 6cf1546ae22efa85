"""BinaryConnect layers: binary (packed) weights, real-valued float32 activations.

The exporter writes these for ``bc_det`` / ``bc_stoch`` models (see
``docs/packed_format.md``): a layer's ``y`` is a float32 GEMM of its input with its weights
unpacked to +-1 (exact on uint8 input), then ``scale * y + shift`` (BatchNorm folded), an
optional max-pool (convs) and a Hardtanh clip, or the scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .bits import n_words, unpack_signs
from .layers import Act, Layer, Shape, _check_padding_bits, _pair, _quad

__all__ = ["RealConv2d", "RealDense"]


def _sgemm(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """float32 ``x @ w`` for the BinaryConnect layers: torch's GEMM where torch is installed
    (it follows torch's thread setting, which the benchmark fixes; NumPy's OpenBLAS starts its
    own threads and took 9x longer than torch at batch 1 on a loaded 2-core machine), else NumPy."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a project dependency
        return x @ w
    return torch.from_numpy(x).mm(torch.from_numpy(w)).numpy()



def per_output(scale: Any, shift: Any, n: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """`scale` and `shift` as contiguous float32 vectors of one value per output (`n`)."""
    scale = np.ascontiguousarray(scale, dtype=np.float32).reshape(-1)
    shift = np.ascontiguousarray(shift, dtype=np.float32).reshape(-1)
    if scale.shape != (n,) or shift.shape != (n,):
        raise ValueError(f"{kind}: scale and shift need shape ({n},)")
    return scale, shift

@dataclass(eq=False)
class RealDense(Layer):
    """Binary weights, real activations (BinaryConnect): ``y = x . w`` with ``w`` in {-1, +1}.

    ``weight``: uint64 (out_features, n_words(in_features)), packed like :class:`Dense`; the
    input is uint8 (``input="uint8"``, the first layer) or float32 activations (``"real"``).
    ``y`` is a float32 GEMM of the input with the weights unpacked to +-1 float32 (built on
    first use); on uint8 input every partial sum is an integer below 2^24, so ``y`` is exact.
    Output ``"hardtanh"``: ``clip(scale * y + shift, -1, 1)``, float32 activations for the
    next :class:`RealDense`; ``"scores"``: ``scale * y + shift`` (each product and sum rounded
    to float32 separately, no fused multiply-add).
    """

    type_name: ClassVar[str] = "real_dense"
    array_names: ClassVar[tuple[str, ...]] = ("weight", "scale", "shift")

    weight: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.uint64))
    in_features: int = 0
    uint8_input: bool = False
    hardtanh: bool = False
    scale: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    shift: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    _pm1: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.weight = np.ascontiguousarray(self.weight, dtype=np.uint64)
        if self.weight.ndim != 2 or self.weight.shape[1] != n_words(self.in_features):
            raise ValueError("real_dense: weight must be (out_features, n_words(in_features))")
        if self.uint8_input and 255 * self.in_features >= 1 << 24:
            raise ValueError("real_dense: uint8 input needs 255 * in_features < 2^24 (exact)")
        n = self.out_features
        self.scale, self.shift = per_output(self.scale, self.shift, n, "real_dense")

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    @property
    def outputs_bits(self) -> bool:
        return False

    def params(self) -> dict[str, Any]:
        return {
            "in_features": int(self.in_features),
            "out_features": self.out_features,
            "input": "uint8" if self.uint8_input else "real",
            "output": "hardtanh" if self.hardtanh else "scores",
        }

    @classmethod
    def from_spec(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> RealDense:
        if params["input"] not in ("uint8", "real") or params["output"] not in (
            "hardtanh", "scores"
        ):
            raise ValueError(f"bad input/output {params['input']!r}/{params['output']!r}")
        layer = cls(
            weight=arrays["weight"],
            in_features=int(params["in_features"]),
            uint8_input=params["input"] == "uint8",
            hardtanh=params["output"] == "hardtanh",
            scale=arrays["scale"],
            shift=arrays["shift"],
        )
        if params["out_features"] != layer.out_features:
            raise ValueError("out_features does not match the weight")
        return layer

    def out_shape(self, s: Shape) -> Shape:
        want = "u8_flat" if self.uint8_input else "real_flat"
        if s.kind != want or s.dims != (self.in_features,):
            raise ValueError(f"real_dense expects {want}[{self.in_features}], gets {s.describe()}")
        _check_padding_bits(self.weight, 1, self.in_features, "real_dense")
        return Shape("real_flat" if self.hardtanh else "scores", (self.out_features,))

    @property
    def pm1(self) -> np.ndarray:
        """The weights as +-1 float32 (in_features, out_features), built on first use."""
        if self._pm1 is None:
            w = unpack_signs(self.weight, self.in_features, np.float32)
            self._pm1 = np.ascontiguousarray(w.T)
        return self._pm1

    def forward(self, a: Act, ops: Any, want_int: bool) -> tuple[Act, np.ndarray | None]:
        x = np.array(a.data, dtype=np.float32, order="C")  # own writable copy for torch
        y = _sgemm(x, self.pm1)
        z = y * self.scale
        z += self.shift
        if self.hardtanh:
            np.clip(z, -1.0, 1.0, out=z)
            return Act("real_flat", z, features=self.out_features), y if want_int else None
        return Act("scores", z), y if want_int else None


@dataclass(eq=False)
class RealConv2d(Layer):
    """BinaryConnect conv: binary weights on a uint8 or float32 image, zero padding, then
    ``scale * y + shift`` (BatchNorm), an optional non-overlapping max-pool, Hardtanh.

    ``weight``: uint64 (out_channels, n_words(C * kh * kw)), each filter in torch's
    ``(c, ky, kx)`` order packed as one row. Activations stay in torch's NCHW layout (float32),
    so a following :class:`Flatten` gives torch's ``(C, H, W)`` order. ``y`` is a float32 GEMM
    of the im2col patches with the +-1 weights (exact on uint8 input, like
    :class:`RealDense`). ``pool``: ``[k, k]`` (kernel = stride, no padding, floor) or
    ``[1, 1]`` for none; it takes the max of ``scale * y + shift`` before the clip.
    """

    type_name: ClassVar[str] = "real_conv2d"
    array_names: ClassVar[tuple[str, ...]] = ("weight", "scale", "shift")

    weight: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.uint64))
    in_channels: int = 1
    kernel: tuple[int, int] = (3, 3)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (1, 1, 1, 1)
    pool: tuple[int, int] = (1, 1)
    uint8_input: bool = False
    scale: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    shift: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    _pm1: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.weight = np.ascontiguousarray(self.weight, dtype=np.uint64)
        self.kernel, self.stride, self.pool = (_pair(self.kernel), _pair(self.stride),
                                               _pair(self.pool))
        self.padding = _quad(self.padding)
        if min(*self.kernel, *self.stride, *self.pool, self.in_channels) < 1:
            raise ValueError("real_conv2d: kernel, stride, pool and in_channels must be >= 1")
        if self.weight.ndim != 2 or self.weight.shape[1] != n_words(self.fan_in):
            raise ValueError("real_conv2d: weight must be (out_channels, n_words(C kh kw))")
        if self.uint8_input and 255 * self.fan_in >= 1 << 24:
            raise ValueError("real_conv2d: uint8 input needs 255 * C kh kw < 2^24 (exact)")
        n = self.out_channels
        self.scale, self.shift = per_output(self.scale, self.shift, n, "real_conv2d")

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    @property
    def fan_in(self) -> int:
        return self.in_channels * self.kernel[0] * self.kernel[1]

    @property
    def outputs_bits(self) -> bool:
        return False

    def params(self) -> dict[str, Any]:
        return {
            "in_channels": int(self.in_channels), "out_channels": self.out_channels,
            "kernel": list(self.kernel), "stride": list(self.stride),
            "padding": list(self.padding), "pool": list(self.pool),
            "input": "uint8" if self.uint8_input else "real", "output": "hardtanh",
        }

    @classmethod
    def from_spec(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> RealConv2d:
        if params["input"] not in ("uint8", "real") or params["output"] != "hardtanh":
            raise ValueError(f"bad input/output {params['input']!r}/{params['output']!r}")
        layer = cls(weight=arrays["weight"], in_channels=int(params["in_channels"]),
                    kernel=tuple(params["kernel"]), stride=tuple(params["stride"]),
                    padding=tuple(params["padding"]), pool=tuple(params["pool"]),
                    uint8_input=params["input"] == "uint8",
                    scale=arrays["scale"], shift=arrays["shift"])
        if params["out_channels"] != layer.out_channels:
            raise ValueError("out_channels does not match the weight")
        return layer

    def _conv_hw(self, h: int, w: int) -> tuple[int, int]:
        pt, pb, pl, pr = self.padding
        ho = (h + pt + pb - self.kernel[0]) // self.stride[0] + 1
        wo = (w + pl + pr - self.kernel[1]) // self.stride[1] + 1
        if ho < self.pool[0] or wo < self.pool[1] or ho <= 0 or wo <= 0:
            raise ValueError(f"real_conv2d: kernel/pool do not fit a {h}x{w} input")
        return ho, wo

    def out_shape(self, s: Shape) -> Shape:
        want = "u8_image" if self.uint8_input else "real_image"
        if s.kind != want or s.dims[0] != self.in_channels:
            raise ValueError(f"real_conv2d expects {want} with {self.in_channels} channels, "
                             f"gets {s.describe()}")
        _check_padding_bits(self.weight, 1, self.fan_in, "real_conv2d")
        ho, wo = self._conv_hw(s.dims[1], s.dims[2])
        return Shape("real_image", (self.out_channels, ho // self.pool[0], wo // self.pool[1]))

    @property
    def pm1(self) -> np.ndarray:
        """The filters as +-1 float32 (C kh kw, out), built on first use."""
        if self._pm1 is None:
            w = unpack_signs(self.weight, self.fan_in, np.float32)
            self._pm1 = np.ascontiguousarray(w.T)
        return self._pm1

    def forward(self, a: Act, ops: Any, want_int: bool) -> tuple[Act, np.ndarray | None]:
        x = np.asarray(a.data, dtype=np.float32)  # (N, C, H, W)
        n = x.shape[0]
        pt, pb, pl, pr = self.padding
        if any(self.padding):
            x = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
        ho, wo = self._conv_hw(a.data.shape[2], a.data.shape[3])
        sh, sw = self.stride
        win = sliding_window_view(x, self.kernel, axis=(2, 3))[
            :, :, : (ho - 1) * sh + 1 : sh, : (wo - 1) * sw + 1 : sw]  # (N, C, Ho, Wo, kh, kw)
        cols = np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(n * ho * wo, -1)
        y = _sgemm(cols, self.pm1).reshape(n, ho, wo, -1)
        z = y * self.scale
        z += self.shift
        kh, kw = self.pool
        if (kh, kw) != (1, 1):
            hp, wp = ho // kh, wo // kw
            z = z[:, : hp * kh, : wp * kw].reshape(n, hp, kh, wp, kw, -1).max(axis=(2, 4))
        np.clip(z, -1.0, 1.0, out=z)
        out = np.ascontiguousarray(z.transpose(0, 3, 1, 2))
        return Act("real_image", out), y.transpose(0, 3, 1, 2) if want_int else None
