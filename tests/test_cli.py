"""`xnorlab predict` on IDX and PNG input, and its errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from xnorlab.cli import main
from xnorlab.data.idx import write_idx
from xnorlab.models.build import build_model
from xnorlab.packed.engine import PackedEngine
from xnorlab.packed.export import export_to_file


@pytest.fixture
def packed_model(tmp_path):
    torch.manual_seed(0)
    model = build_model({"name": "mlp", "hidden": 32, "depth": 1}, "bnn", (1, 28, 28), 10).eval()
    path = tmp_path / "m.xnor"
    export_to_file(model, path, (1, 28, 28),
                   config={"dataset": {"classes": [f"c{i}" for i in range(10)]}})
    return path


def test_predict_idx_with_labels(packed_model, tmp_path, capsys):
    images = np.random.default_rng(0).integers(0, 256, (6, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "x", images)
    expected = PackedEngine.load(packed_model).predict(images[:, None])
    write_idx(tmp_path / "y", expected.astype(np.uint8))
    assert main(["predict", str(packed_model), str(tmp_path / "x"),
                 "--labels", str(tmp_path / "y")]) == 0
    out, err = capsys.readouterr()
    assert [int(line.split("\t")[1]) for line in out.splitlines()] == expected.tolist()
    assert out.splitlines()[0].split("\t")[2] == f"c{expected[0]}"
    assert "accuracy 1.0000 on 6 images" in err


def test_predict_png_files(packed_model, tmp_path, capsys):
    rng = np.random.default_rng(1)
    paths = []
    for i in range(2):
        pixels = rng.integers(0, 256, (28, 28), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    assert main(["predict", str(packed_model), *paths]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_bad_inputs_fail_with_a_message(packed_model, tmp_path, capsys):
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "small.png")
    assert main(["predict", str(packed_model), str(tmp_path / "small.png")]) == 1
    assert "10x10" in capsys.readouterr().err
    truncated = tmp_path / "t.xnor"
    truncated.write_bytes(packed_model.read_bytes()[:200])
    images = tmp_path / "x"
    write_idx(images, np.zeros((1, 28, 28), np.uint8))
    assert main(["predict", str(truncated), str(images)]) == 1
    assert "error:" in capsys.readouterr().err


def test_16_bit_png_is_refused_not_clipped(packed_model, tmp_path, capsys):
    # Regression (fault harness): PIL's convert("L") clipped 16-bit pixels to 255 and predict
    # classified the result with exit 0.
    pixels = np.random.default_rng(2).integers(0, 65536, (28, 28), dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    assert main(["predict", str(packed_model), str(tmp_path / "deep.png")]) == 1
    err = capsys.readouterr().err
    assert "deep.png" in err and "8 bits" in err


def test_rgb_png_with_equal_channels_gets_the_grey_answer(packed_model, tmp_path, capsys):
    pixels = np.random.default_rng(3).integers(0, 256, (28, 28), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "g.png")
    Image.fromarray(np.repeat(pixels[..., None], 3, axis=2)).save(tmp_path / "c.png")
    assert main(["predict", str(packed_model), str(tmp_path / "g.png")]) == 0
    grey = capsys.readouterr().out
    assert main(["predict", str(packed_model), str(tmp_path / "c.png")]) == 0
    assert capsys.readouterr().out == grey


def test_bad_labels_truncated_png_and_wrong_idx_shape_are_named(packed_model, tmp_path, capsys):
    # Regressions (fault harness): a bad --labels file raised a traceback after the answers were
    # printed; a truncated PNG and an IDX of the wrong shape gave errors naming no file.
    images = tmp_path / "x"
    write_idx(images, np.zeros((3, 28, 28), np.uint8))
    bad_labels = tmp_path / "labels"
    bad_labels.write_bytes(b"\x00\x00\x08")
    assert main(["predict", str(packed_model), str(images), "--labels", str(bad_labels)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "labels" in err and "Traceback" not in err
    write_idx(bad_labels, np.zeros(2, np.uint8))
    assert main(["predict", str(packed_model), str(images), "--labels", str(bad_labels)]) == 1
    assert "labels: 2 labels for 3 images" in capsys.readouterr().err
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "t.png")
    (tmp_path / "t.png").write_bytes((tmp_path / "t.png").read_bytes()[:40])
    assert main(["predict", str(packed_model), str(tmp_path / "t.png")]) == 1
    assert "t.png" in capsys.readouterr().err
    write_idx(tmp_path / "flat", np.zeros(5, np.uint8))
    assert main(["predict", str(packed_model), str(tmp_path / "flat")]) == 1
    assert "flat" in capsys.readouterr().err
