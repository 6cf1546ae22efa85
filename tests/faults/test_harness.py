"""The fault harness at CI scale, and its parts on their own."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT
from xnorlab.faults import corrupt
from xnorlab.faults.outcome import Tally, summary


def test_mutators_change_the_file_as_named(tmp_path):
    good = tmp_path / "good.bin"
    good.write_bytes(bytes(range(256)) * 4)
    rng = random.Random(0)
    short = corrupt.write_mutant(good, tmp_path / "t", "truncate", rng)
    assert 0 < short.stat().st_size < good.stat().st_size
    flipped = corrupt.write_mutant(good, tmp_path / "f", "bitflip", rng).read_bytes()
    assert len(flipped) == 1024 and flipped != good.read_bytes()
    assert corrupt.write_mutant(good, tmp_path / "e", "empty", rng).stat().st_size == 0
    assert corrupt.write_mutant(good, tmp_path / "d", "directory", rng).is_dir()


def test_wrong_type_changes_one_value_and_keeps_the_package_header(tmp_path):
    good = tmp_path / "smoke.yaml"
    good.write_text("# @package _global_\ntrainer:\n  max_epochs: 2\n  accelerator: cpu\n"
                    "  max_minutes: null\n")
    for seed in range(6):
        bad = corrupt.write_mutant(good, tmp_path / f"bad{seed}.yaml", "wrong_type",
                                   random.Random(seed)).read_text()
        assert bad.startswith("# @package _global_\n")
        before, after = yaml.safe_load(good.read_text()), yaml.safe_load(bad)
        changed = [k for k in before["trainer"] if before["trainer"][k] != after["trainer"][k]]
        assert len(changed) == 1
        (key,) = changed
        assert type(after["trainer"][key]) is not type(before["trainer"][key])


def test_tally_counts_survivors_and_losses():
    t = Tally()
    t.add("a", [])
    t.add("b", ["broke"], lost=2)
    s = summary({"x": t})
    assert s["total"] == {"tried": 2, "survived": 1, "lost": 2, "duplicated": 0}
    assert s["classes"]["x"]["failures"] == [{"case": "b", "problems": ["broke"]}]
    t.add("b:again", [])
    assert summary({"x": t})["classes"]["x"]["by_kind"] == {
        "a": {"tried": 1, "survived": 1}, "b": {"tried": 2, "survived": 1}}


@pytest.mark.faults
@pytest.mark.slow
def test_ci_profile_every_fault_survives_and_nothing_is_lost(tmp_path):
    out = tmp_path / "faults.json"
    proc = subprocess.run(
        [sys.executable, "pipelines/faults.py", f"work_dir={tmp_path / 'work'}", f"out={out}",
         f"hydra.run.dir={tmp_path / 'hydra'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    result = json.loads(out.read_text())
    assert result["complete"], proc.stderr[-3000:]
    failures = {k: c["failures"] for k, c in result["classes"].items() if c["failures"]}
    assert not failures, (failures, proc.stderr[-2000:])
    for name in ("kill", "disk_full", "corrupt", "concurrent_dvc"):
        cls = result["classes"][name]
        if name == "disk_full" and os.geteuid() != 0:
            assert cls["skipped"], "without root the full-disk class must say it did not run"
            continue
        assert cls["tried"] > 0 and cls["survived"] == cls["tried"], name
    # every kind of bad file is fed to the command that reads it, conf/ files included
    kinds = result["classes"]["corrupt"]["by_kind"]
    assert {"xnor", "idx-images", "idx-labels", "png", "checkpoint", "config-train",
            "saved-config"} <= set(kinds)
    assert kinds["config-train"]["tried"] == 5  # truncated, bit flips, wrong type, empty, dir
    assert result["total"]["lost"] == 0 and result["total"]["duplicated"] == 0
    assert proc.returncode == 0
