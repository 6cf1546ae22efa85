"""Export a binarized torch ``nn.Sequential`` (``xnorlab.models``) to packed layers / a file.

Accepted module sequence (``Dropout`` is skipped; the model is evaluated in eval mode)::

    Quantize8bit, [Flatten], first BinaryLinear|BinaryConv2d (real 8-bit input),
    ( [BatchNorm], [MaxPool2d], [Flatten], BinaryLinear|BinaryConv2d (sign input) )*,
    [BatchNorm1d]                                   -> scores

Binary layers need a kernel quantizer that declares itself ``binary`` and ``exportable`` (values
+-1, times a per-output-channel alpha where it is ``scaled``) and, after the first, an input
quantizer that is an unscaled, exportable, deterministic-at-eval sign; no ``activation_scale``.

**Thresholds.** A hidden layer's output bit for channel ``c`` is ``q(BN(pre(y)))`` with ``y``
the exact integer pre-activation, ``pre(y) = y * alpha_c (+ bias_c)`` and ``q`` the next
layer's input quantizer. The exporter evaluates exactly these torch ops (the model's own
BatchNorm module and quantizer, in eval mode, float32) on candidate integers ``y`` and takes the
smallest passing integer (or, where the map decreases -- negative BN scale -- the largest
passing integer with ``flip``; channels that always/never fire get sentinel thresholds). The map
is monotone (every IEEE operation is monotone in each argument), so bisection over the full
candidate range ``[-K, K]`` (hidden; ``K`` = fan-in) or ``[-255 K, 255 K]`` (first layer) finds
it, and ``verify`` re-evaluates the whole hidden range (a bounded sample for wide first
layers) to confirm. This reproduces torch's float rounding exactly for ``ste_sign`` kernels.

XNOR caveat: torch computes ``F.linear(x, alpha * sign(W))``, a float sum whose rounding depends
on the BLAS summation order, while the engine (and this derivation) uses ``fl(alpha * y)``. The
two differ by a few ulps, which flips a bit only when ``BN(alpha * y)`` lies within those ulps of
0 for a reachable ``y``; see ``docs/packed_format.md``.

Weight layouts are described in :mod:`.layers`; dense weights after a flatten of a conv feature
map are permuted from torch's (C, H, W) flatten order to the engine's pixel-major layout.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .bits import pack_bits
from .centroids import NearestCentroid
from .engine import PackedEngine
from .layers import (
    Conv2d,
    Dense,
    Flatten,
    Layer,
    MaxPool2d,
    input_shape_of,
)
from .real_layers import RealConv2d, RealDense
from .thresholds import ThresholdError, derive_thresholds, verify_thresholds

__all__ = [
    "ExportError",
    "export_kmeans",
    "derive_thresholds",
    "export_layers",
    "export_model",
    "export_to_file",
    "torch_integer_preactivations",
]


class ExportError(ValueError):
    """The model cannot be exported bit-exactly (unsupported module or configuration)."""


def _layer_classes():
    from ..quant.layers import BinaryConv2d, BinaryLinear, Quantize8bit

    return BinaryLinear, BinaryConv2d, Quantize8bit


# -- threshold derivation: see .thresholds ----------------------------------------------------


# -- module helpers -----------------------------------------------------------------------------


def _kernel_signs_and_alpha(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(+-1 bits as bool tensor shaped like the weight, per-output-channel alpha or None)."""
    kq = layer.kernel_quantizer
    if kq is None or not (kq.binary and kq.exportable):
        raise ExportError(
            f"layer kernel quantizer {type(kq).__name__ if kq is not None else None} is not "
            "an exportable binary quantizer; only binarized kernels can be packed"
        )
    if not kq.deterministic_eval:
        raise ExportError("stochastic_eval kernels are not deterministic")
    with torch.no_grad():
        was_training = kq.training
        kq.eval()  # a stochastic kernel exports its test-time rule, sign(W)
        values, scale = kq.split(layer.weight)
        kq.train(was_training)
        if not bool(((values == 1) | (values == -1)).all()):
            raise ExportError("kernel quantizer output is not +-1")
        if scale is None:
            return values > 0, None
        alpha = scale.reshape(-1).float()
        if kq.scaled and alpha.numel() == values.shape[0]:
            return values > 0, alpha
    raise ExportError(f"kernel scale of shape {tuple(scale.shape)} is not per output channel")


def _check_sign_input(layer: nn.Module, idx: int) -> nn.Module:
    iq = layer.input_quantizer
    if iq is None:
        raise ExportError(
            f"module {idx}: hidden binary layer with real (unquantized) input; only models with "
            "binarized activations (bnn, xnor) can be packed"
        )
    if not (iq.binary and iq.exportable and not iq.scaled and iq.deterministic_eval):
        raise ExportError(f"module {idx}: input quantizer {iq!r} is not a deterministic sign")
    return iq


def _pre_activation(layer: nn.Module, alpha: torch.Tensor | None, view: tuple[int, ...]):
    """``y (int64, (L, C)) -> float32 pre-activation`` shaped ``view`` (torch's own ops)."""
    bias = None if layer.bias is None else layer.bias.detach().float()

    def pre(y: torch.Tensor) -> torch.Tensor:
        v = y.to(torch.float32)
        if alpha is not None:
            v = v * alpha
        if bias is not None:
            v = v + bias
        return v.reshape(v.shape[0], *view)

    return pre


def _bn_check(bn: nn.Module, channels: int, idx: int) -> None:
    if bn.num_features != channels:
        raise ExportError(f"module {idx}: BatchNorm has {bn.num_features} features, not {channels}")
    if not bn.track_running_stats or bn.running_mean is None:
        raise ExportError(f"module {idx}: BatchNorm without running statistics")


def _affine(
    layer: nn.Module, alpha: torch.Tensor | None, bn: nn.Module | None, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Scores = scale * y + shift (the last layer), folded in float64, stored float32."""
    scale = np.ones(n) if alpha is None else alpha.double().numpy().copy()
    shift = np.zeros(n) if layer.bias is None else layer.bias.detach().double().numpy().copy()
    if bn is not None:
        inv = 1.0 / np.sqrt(bn.running_var.detach().double().numpy() + bn.eps)
        g = np.ones(n) if bn.weight is None else bn.weight.detach().double().numpy()
        b = np.zeros(n) if bn.bias is None else bn.bias.detach().double().numpy()
        s = g * inv
        shift = (shift - bn.running_mean.detach().double().numpy()) * s + b
        scale = scale * s
    return scale.astype(np.float32), shift.astype(np.float32)


def _pack_dense_after_image(bits: torch.Tensor, h: int, w: int, c: int) -> np.ndarray:
    """Torch flattens (C, H, W); the engine's flat layout is (H, W, channel words)."""
    b = bits.numpy().reshape(bits.shape[0], c, h, w).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(pack_bits(b)).reshape(bits.shape[0], -1)


# -- the walk -----------------------------------------------------------------------------------


def export_layers(
    model: nn.Module, input_shape: Sequence[int], *, verify: bool = True
) -> list[Layer]:
    """Translate ``model`` (an ``nn.Sequential``) into packed layers (see module docstring)."""
    BinaryLinear, BinaryConv2d, Quantize8bit = _layer_classes()
    if not isinstance(model, nn.Sequential):
        raise ExportError(f"expected an nn.Sequential, got {type(model).__name__}")
    mods = [(i, m) for i, m in enumerate(model) if not isinstance(m, nn.Dropout | nn.Identity)]
    if not mods or not isinstance(mods[0][1], Quantize8bit):
        first = type(mods[0][1]).__name__ if mods else "nothing"
        raise ExportError(
            f"the model must start with Quantize8bit (the 8-bit input), not {first}; float "
            "models (Normalize) cannot be packed"
        )
    if float(getattr(mods[0][1], "scale", 255.0)) != 255.0:
        raise ExportError("Quantize8bit with a scale other than 255")
    mods = mods[1:]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return _walk(
                mods, tuple(int(d) for d in input_shape), verify, BinaryLinear, BinaryConv2d
            )
    finally:
        model.train(was_training)


def flatten_layer(idx: int, m: nn.Flatten) -> Flatten:
    """The engine's Flatten for module `idx`: only a flatten of all but the batch axis."""
    if m.start_dim != 1 or m.end_dim != -1:
        raise ExportError(f"module {idx}: Flatten must use start_dim=1, end_dim=-1")
    return Flatten()


def _real_activations(mods, BinaryLinear, BinaryConv2d) -> bool:
    """BinaryConnect: binary layers after the first take real (Hardtanh) activations."""
    binary = [m for _, m in mods if isinstance(m, BinaryLinear | BinaryConv2d)]
    return len(binary) > 1 and binary[1].input_quantizer is None


def _walk_real(mods, input_shape, BinaryLinear, BinaryConv2d) -> list[Layer]:
    """BinaryConnect: ``(BinaryConv2d, [BatchNorm2d], [MaxPool2d], [Hardtanh])*, [Flatten],
    (BinaryLinear, [BatchNorm1d], [Hardtanh])*``: :class:`RealConv2d` / :class:`RealDense`
    layers (binary weights; BN and alpha folded into scale/shift, float64 -> float32)."""
    shape = input_shape_of(input_shape)
    out: list[Layer] = []
    k = 0
    while k < len(mods):
        idx, m = mods[k]
        if isinstance(m, nn.Flatten):
            out.append(flatten_layer(idx, m))
            shape = out[-1].out_shape(shape)
            k += 1
            continue
        if not isinstance(m, BinaryLinear | BinaryConv2d):
            raise ExportError(
                f"module {idx} ({type(m).__name__}): a model with real activations "
                "(BinaryConnect) packs only Flatten and binary layer -> BatchNorm -> [MaxPool2d] "
                "-> Hardtanh"
            )
        if m.input_quantizer is not None or getattr(m, "activation_scale", False):
            raise ExportError(f"module {idx}: mixes binarized and real activations")
        conv = isinstance(m, BinaryConv2d)
        n_out = m.out_channels if conv else m.out_features
        bits, alpha = _kernel_signs_and_alpha(m)
        k += 1
        bn = None
        if k < len(mods) and isinstance(mods[k][1], nn.BatchNorm2d if conv else nn.BatchNorm1d):
            bn = mods[k][1]
            _bn_check(bn, n_out, mods[k][0])
            k += 1
        pool = (1, 1)
        if conv and k < len(mods) and isinstance(mods[k][1], nn.MaxPool2d):
            p = mods[k][1]
            ks, st = p.kernel_size, p.stride if p.stride is not None else p.kernel_size
            if (ks != st or p.padding not in (0, (0, 0)) or p.dilation not in (1, (1, 1))
                    or p.ceil_mode):
                raise ExportError(f"module {mods[k][0]}: MaxPool2d needs kernel = stride, "
                                  "no padding, dilation 1, floor mode")
            pool = (ks, ks) if isinstance(ks, int) else tuple(ks)
            k += 1
        act = k < len(mods) and isinstance(mods[k][1], nn.Hardtanh)
        if act:
            ht = mods[k][1]
            if (ht.min_val, ht.max_val) != (-1.0, 1.0):
                raise ExportError(f"module {mods[k][0]}: Hardtanh must clip to [-1, 1]")
            k += 1
        elif k < len(mods) and not isinstance(mods[k][1], nn.Flatten):
            j, extra = mods[k]
            raise ExportError(f"module {j} ({type(extra).__name__}) cannot follow a layer here")
        scale, shift = _affine(m, alpha, bn, n_out)
        if conv:
            if not act:
                raise ExportError(f"module {idx}: a BinaryConnect conv must end in Hardtanh")
            if m.groups != 1 or m.dilation != (1, 1) or m.padding_mode != "zeros":
                raise ExportError(f"module {idx}: conv needs groups=1, dilation=1, zeros padding")
            left, right, top, bottom = m.pad_amounts
            layer: Layer = RealConv2d(
                weight=pack_bits(bits.reshape(n_out, -1).numpy()), in_channels=m.in_channels,
                kernel=m.kernel_size, stride=m.stride, padding=(top, bottom, left, right),
                pool=pool, uint8_input=shape.kind == "u8_image", scale=scale, shift=shift)
        else:
            layer = RealDense(weight=pack_bits(bits.numpy()), in_features=m.in_features,
                              uint8_input=shape.kind == "u8_flat", hardtanh=act,
                              scale=scale, shift=shift)
        try:
            shape = layer.out_shape(shape)
        except ValueError as e:
            raise ExportError(f"module {idx}: {e}") from None
        out.append(layer)
    if shape.kind != "scores":
        raise ExportError("the last layer must give the scores (no Hardtanh after it)")
    return out


def _walk(mods, input_shape, verify, BinaryLinear, BinaryConv2d) -> list[Layer]:
    if _real_activations(mods, BinaryLinear, BinaryConv2d):
        return _walk_real(mods, input_shape, BinaryLinear, BinaryConv2d)
    shape = input_shape_of(input_shape)
    out: list[Layer] = []
    binary_idx = [k for k, (_, m) in enumerate(mods) if isinstance(m, BinaryLinear | BinaryConv2d)]
    if not binary_idx:
        raise ExportError("no binary layer found")
    k = 0
    while k < len(mods):
        idx, m = mods[k]
        if isinstance(m, nn.Flatten):
            layer: Layer = flatten_layer(idx, m)
            out.append(layer)
            shape = layer.out_shape(shape)
            k += 1
            continue
        if not isinstance(m, BinaryLinear | BinaryConv2d):
            raise ExportError(
                f"module {idx} ({type(m).__name__}) cannot be packed here; expected Flatten or "
                "a binary layer (BatchNorm/MaxPool2d must follow a binary layer)"
            )
        first = not out or all(isinstance(x, Flatten) for x in out)
        if getattr(m, "activation_scale", False):
            raise ExportError(f"module {idx}: activation_scale (XNOR beta) is not bit-exportable")
        if first:
            if m.input_quantizer is not None:
                raise ExportError(
                    f"module {idx}: the first binary layer must take the real 8-bit input "
                    "(input_quantizer=None)"
                )
        else:
            _check_sign_input(m, idx)
        bits, alpha = _kernel_signs_and_alpha(m)
        # gather BN / pool that belong to this layer
        bn, pool = None, None
        k2 = k + 1
        if k2 < len(mods) and isinstance(mods[k2][1], nn.BatchNorm1d | nn.BatchNorm2d):
            bn = mods[k2][1]
            k2 += 1
        if k2 < len(mods) and isinstance(mods[k2][1], nn.MaxPool2d):
            pool = mods[k2]
            k2 += 1
        nxt = next((mods[j] for j in binary_idx if j >= k2), None)
        is_last = nxt is None
        if is_last and k2 < len(mods):
            j, extra = mods[k2]
            raise ExportError(f"module {j} ({type(extra).__name__}) after the last layer")
        layer, shape = _make_layer(m, idx, bits, alpha, bn, pool, nxt, shape, first, verify)
        out.append(layer)
        if pool is not None:
            pidx, p = pool
            if p.dilation not in (1, (1, 1)) or p.ceil_mode or p.return_indices:
                raise ExportError(f"module {pidx}: MaxPool2d needs dilation 1, floor mode")
            stride = p.stride if p.stride is not None else p.kernel_size
            mp = MaxPool2d(p.kernel_size, stride, p.padding)
            shape = mp.out_shape(shape)
            out.append(mp)
        k = k2
    return out


def _make_layer(m, idx, bits, alpha, bn, pool, nxt, shape, first, verify):
    BinaryLinear, BinaryConv2d, _ = _layer_classes()
    conv = isinstance(m, BinaryConv2d)
    n_out = m.out_channels if conv else m.out_features
    if bn is not None:
        if conv != isinstance(bn, nn.BatchNorm2d):
            raise ExportError(f"module {idx}: BatchNorm kind does not match the layer")
        _bn_check(bn, n_out, idx)
    if pool is not None and (not conv or bn is None):
        raise ExportError(
            f"module {pool[0]}: MaxPool2d must come after conv -> BatchNorm (pooling bits is exact "
            "only once the output is thresholded)"
        )
    if conv:
        if m.groups != 1 or m.dilation != (1, 1) or m.padding_mode != "zeros":
            raise ExportError(f"module {idx}: conv needs groups=1, dilation=1, zeros padding")
        kh, kw = m.kernel_size
        left, right, top, bottom = m.pad_amounts
        c_in = m.in_channels
        wb = bits.permute(0, 2, 3, 1).numpy()  # (out, kh, kw, in)
        if first:
            weight = pack_bits(wb.reshape(n_out, -1))
        else:
            weight = np.ascontiguousarray(pack_bits(wb)).reshape(n_out, -1)
        fan_in = kh * kw * c_in
        view: tuple[int, ...] = (n_out, 1, 1)
    else:
        if first:
            if shape.kind != "u8_flat":
                raise ExportError(f"module {idx}: BinaryLinear on an image needs a Flatten first")
            weight = pack_bits(bits.numpy())
        elif shape.kind == "bits_flat" and shape.image is not None:
            weight = _pack_dense_after_image(bits, *shape.image)
        elif shape.kind == "bits_flat":
            weight = pack_bits(bits.numpy())
        else:
            raise ExportError(f"module {idx}: BinaryLinear needs a flat input (add Flatten)")
        fan_in = m.in_features
        view = (n_out,)
    lo, hi = (-255 * fan_in, 255 * fan_in) if first else (-fan_in, fan_in)
    if nxt is not None:
        q_next = _check_sign_input(nxt[1], nxt[0])
        pre = _pre_activation(m, alpha, view)

        def fire(y: torch.Tensor) -> torch.Tensor:
            v = pre(y)
            if bn is not None:
                v = bn(v)
            return (q_next(v) > 0).reshape(y.shape[0], n_out)

        thresh, flip = derive_thresholds(fire, n_out, lo, hi)
        if verify:
            try:
                verify_thresholds(fire, thresh, flip, lo, hi, f"module {idx}")
            except ThresholdError as e:
                raise ExportError(str(e)) from None
        stage: dict[str, Any] = {"thresh": thresh, "flip": flip}
    else:
        scale, shift = _affine(m, alpha, bn, n_out)
        stage = {"scale": scale, "shift": shift}
    if conv:
        layer: Layer = Conv2d(
            weight=weight,
            in_channels=c_in,
            kernel=(kh, kw),
            stride=m.stride,
            padding=(top, bottom, left, right),
            uint8_input=first,
            **stage,
        )
    else:
        layer = Dense(weight=weight, in_features=fan_in, uint8_input=first, **stage)
    try:
        new_shape = layer.out_shape(shape)
    except ValueError as e:
        raise ExportError(f"module {idx}: {e}") from None
    return layer, new_shape


def export_kmeans(km: Any, input_shape: Sequence[int], **engine_kwargs: Any) -> PackedEngine:
    """A fitted Hamming :class:`~xnorlab.models.kmeans.KMeans` (with its cluster labels) as
    ``flatten -> nearest_centroid``: centroid bits packed, the pixel test as an integer."""
    if km.metric != "hamming":
        raise ExportError("only K-means on binarized pixels (metric=hamming) can be packed")
    if km.cluster_to_label_ is None:
        raise ExportError("K-means clusters have no labels (map_clusters_to_labels first)")
    # the model binarizes pixel / 255 >= threshold: find the integer that test amounts to by
    # evaluating the model's own code on every pixel value, given as uint8 and as the data
    # module's float32 u / 255 (the two must agree: monotone, no rounding at the boundary)
    u = np.arange(256)
    fires = km._prepare(u.astype(np.uint8)[:, None])[:, 0] > 0
    fires_f = km._prepare((torch.arange(256).float() / 255.0).numpy()[:, None])[:, 0] > 0
    t = int(np.argmax(fires)) if fires.any() else 256
    if not (np.array_equal(fires, u >= t) and np.array_equal(fires_f, u >= t)):
        raise ExportError("K-means pixel test is not one threshold on the 8-bit value")
    centers = np.asarray(km.cluster_centers_)
    d = int(np.prod(input_shape))
    if centers.shape[1] != d:
        raise ExportError(f"centroids have {centers.shape[1]} pixels, the input {d}")
    layer = NearestCentroid(weight=pack_bits(centers > 0), labels=km.cluster_to_label_,
                            in_features=d, pixel_threshold=t)
    meta = default_metadata()
    meta.update(engine_kwargs.pop("metadata", None) or {})
    return PackedEngine([Flatten(), layer], tuple(input_shape), metadata=meta, **engine_kwargs)


def export_model(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    backend: str = "numba",
    metadata: dict[str, Any] | None = None,
    verify: bool = True,
    **engine_kwargs: Any,
) -> PackedEngine:
    """Export ``model`` and return a :class:`PackedEngine` over the packed layers."""
    layers = export_layers(model, input_shape, verify=verify)
    meta = default_metadata()
    meta.update(metadata or {})
    return PackedEngine(layers, tuple(input_shape), backend=backend, metadata=meta, **engine_kwargs)


def export_to_file(
    model: nn.Module,
    path: str | Path,
    input_shape: Sequence[int],
    *,
    config: Any = None,
    metadata: dict[str, Any] | None = None,
    verify: bool = True,
) -> Path:
    """Export ``model`` to a ``.xnor`` file (atomic write). ``config`` (dict / OmegaConf / any
    JSON-able) is stored under ``metadata["config"]``."""
    meta = dict(metadata or {})
    if config is not None:
        meta["config"] = jsonable(config)
    eng = export_model(model, input_shape, metadata=meta, verify=verify, backend="numpy")
    return eng.save(path)


def default_metadata() -> dict[str, Any]:
    import xnorlab

    return {
        "exporter": "xnorlab.packed.export",
        "versions": {
            "xnorlab": getattr(xnorlab, "__version__", "unknown"),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }


def jsonable(cfg: Any) -> Any:
    """A run config (OmegaConf, dataclass, dict) as plain JSON data for the file header."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(cfg, DictConfig | ListConfig):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    import dataclasses
    import json

    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        cfg = dataclasses.asdict(cfg)
    return json.loads(json.dumps(cfg, default=str))


# -- torch-side reference ---------------------------------------------------------------------


def torch_integer_preactivations(
    model: nn.Module, x: torch.Tensor, *, allow_real: bool = False
) -> list[np.ndarray]:
    """Exact pre-activations of every binary layer of ``model`` on float input ``x``.

    Runs the model in eval mode, captures each binary layer's input, and recomputes
    ``layer(x)`` with the +-1 kernel (no alpha, no bias) in float64: exact integers (int64)
    where the input is 8-bit pixels or signs, the quantities the engine's
    :meth:`PackedEngine.forward_int` returns. A layer with real input (BinaryConnect) raises
    :class:`ExportError` unless ``allow_real``, then gives its float64 ``x . w`` (float32 ``x``
    summed in float64: a reference for the engine's float32 GEMM).
    """
    BinaryLinear, BinaryConv2d, _ = _layer_classes()
    import torch.nn.functional as F

    results: list[np.ndarray] = []
    hooks = []

    def hook(mod, inputs):
        (xin,) = inputs
        xq = mod.input_quantizer(xin) if mod.input_quantizer is not None else xin
        bits, _ = _kernel_signs_and_alpha(mod)
        w = torch.where(bits, 1.0, -1.0).double()
        xq = xq.double()
        if isinstance(mod, BinaryConv2d):
            pad = mod.pad_amounts
            if any(pad):
                xq = F.pad(xq, pad, value=1.0 if mod.input_quantizer is not None else 0.0)
            y = F.conv2d(xq, w, None, mod.stride, 0, mod.dilation, mod.groups)
        else:
            y = F.linear(xq, w)
        if bool((xq == torch.round(xq)).all()) and bool((y == torch.round(y)).all()):
            results.append(y.numpy().astype(np.int64))
        elif allow_real:
            results.append(y.numpy())
        else:
            raise ExportError("pre-activation is not an integer (real input not 8-bit?)")

    for mod in model.modules():
        if isinstance(mod, BinaryLinear | BinaryConv2d):
            hooks.append(mod.register_forward_pre_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return results
