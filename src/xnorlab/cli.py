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
        return images
    return np.stack([_read_png(p, shape) for p in paths])


def _read_png(path: str, shape: tuple[int, ...]) -> np.ndarray:
    from PIL import Image

    channels, height, width = shape
    with Image.open(path) as img:
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
    if args.labels:
        labels = read_idx(args.labels).astype(np.int64)
        if len(labels) != len(pred):
            print(f"error: {len(labels)} labels for {len(pred)} images", file=sys.stderr)
            return 1
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
