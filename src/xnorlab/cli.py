"""The `xnorlab` command: classify images with a packed (.xnor) model.

    xnorlab predict packed/mnist-mlp-bnn.xnor data/raw/mnist/t10k-images-idx3-ubyte
    xnorlab predict packed/mnist-mlp-bnn.xnor digit.png --labels labels-idx1-ubyte
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def load_images(paths: Sequence[str], shape: tuple[int, ...]) -> np.ndarray:
    """uint8 images (N, C, H, W) from one IDX file or several PNG files."""
    from xnorlab.data.idx import read_idx

    if len(paths) == 1 and not paths[0].lower().endswith(".png"):
        images = read_idx(paths[0])
        if images.dtype != np.uint8:
            raise ValueError(f"{paths[0]}: IDX images must be uint8, got {images.dtype}")
        if images.ndim == 3:  # (N, H, W): add the channel axis
            images = images[:, None]
        if images.shape[1:] != tuple(shape):
            raise ValueError(f"{paths[0]}: IDX images of shape {images.shape[1:]}, the model "
                             f"takes {tuple(shape)} (channels, height, width)")
        return images
    return np.stack([_read_png(p, shape) for p in paths])


# PIL modes holding 8-bit samples (or fewer); converting these to L or RGB loses nothing the
# model can see. 16-bit and float modes ("I;16", "I", "F") would be clipped to 255 by convert().
EIGHT_BIT_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr"}


def _read_png(path: str, shape: tuple[int, ...]) -> np.ndarray:
    channels, height, width = shape
    try:
        return _png_pixels(path, channels, height, width)
    except (OSError, SyntaxError) as err:  # PIL's errors do not always name the file
        raise ValueError(f"{path}: not a readable image ({err})") from err


def _png_pixels(path: str, channels: int, height: int, width: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        if img.mode not in EIGHT_BIT_MODES:
            raise ValueError(f"{path}: image mode {img.mode} has more than 8 bits per sample; "
                             "the model takes 8-bit pixels (convert the image to 8 bits first)")
        img = img.convert("L" if channels == 1 else "RGB")
        if img.size != (width, height):
            raise ValueError(f"{path}: image is {img.size[0]}x{img.size[1]}, the model takes "
                             f"{width}x{height}")
        pixels = np.asarray(img, dtype=np.uint8)
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def predict(args: argparse.Namespace) -> int:
    from xnorlab.data.idx import read_idx
    from xnorlab.packed.engine import PackedEngine
    from xnorlab.packed.format import PackedFormatError

    try:
        engine = PackedEngine.load(args.model, backend=args.backend)
        images = load_images(args.inputs, engine.input_shape)
        # read before printing anything, so a bad labels file leaves no half answer behind
        labels = read_idx(args.labels).astype(np.int64) if args.labels else None
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{args.labels}: {len(labels)} labels for {len(images)} images")
        pred = engine.predict(images)
    except (PackedFormatError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    classes = engine.metadata.get("config", {}).get("dataset", {}).get("classes")
    names = [classes[p] if classes else str(p) for p in pred]
    if len(args.inputs) > 1:
        for path, p, name in zip(args.inputs, pred, names, strict=True):
            print(f"{path}\t{p}\t{name}")
    elif not args.quiet:
        for i, (p, name) in enumerate(zip(pred, names, strict=True)):
            print(f"{i}\t{p}\t{name}")
    if labels is not None:
        print(f"accuracy {np.mean(labels == pred):.4f} on {len(pred)} images", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `xnorlab` console script."""
    parser = argparse.ArgumentParser(prog="xnorlab", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="classify IDX or PNG images with a packed model")
    p.add_argument("model", type=Path, help="a .xnor file written by the export stage")
    p.add_argument("inputs", nargs="+", help="one IDX images file, or PNG files")
    p.add_argument("--labels", help="IDX labels file: print the accuracy")
    p.add_argument("--backend", default="numba", choices=["numba", "numpy"])
    p.add_argument("--quiet", action="store_true", help="no per-image lines for IDX input")
    p.set_defaults(func=predict)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
