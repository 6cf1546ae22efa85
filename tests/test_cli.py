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
