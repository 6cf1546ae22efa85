"""Corrupt and foreign files: mutate a good file automatically, feed it to the command that
reads it, and judge the outcome.

A case survives when the command gives a clear error (non-zero exit, no Python traceback,
the file named) or, if it exits 0, its answer equals the answer on the intact file (a flip in
bytes the reader ignores). A hang, a traceback, or exit 0 with another answer is a failure.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from xnorlab.faults.outcome import Tally
from xnorlab.faults.workspace import Proc

Mutator = Callable[[bytes, random.Random], bytes | None]  # None: make a directory instead


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(1, max(2, len(data)))]


def flip_bits(data: bytes, rng: random.Random, start: int = 0, end: int | None = None) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        pos = rng.randrange(start, min(end or len(buf), len(buf)))
        buf[pos] ^= 1 << rng.randrange(8)
    return bytes(buf)


def empty(data: bytes, rng: random.Random) -> bytes:
    return b""


def random_bytes(data: bytes, rng: random.Random) -> bytes:
    return rng.randbytes(rng.randint(1, 4096))


def text(data: bytes, rng: random.Random) -> bytes:
    return b"this is not the file you are looking for\n"


def directory(data: bytes, rng: random.Random) -> None:
    return None


def wrong_type(data: bytes, rng: random.Random) -> bytes:
    """A YAML mapping with one leaf value, drawn at random, replaced by a value of another type
    (a number by a word, a word or a flag by a list, null by a mapping)."""
    doc = yaml.safe_load(data)
    if not isinstance(doc, dict) or not doc:
        return yaml.safe_dump(["not", "a", "mapping"]).encode()
    header = b"".join(line + b"\n" for line in data.splitlines() if line.startswith(b"# @"))
    leaves: list[tuple[dict, str]] = []

    def walk(node: dict) -> None:
        for key, value in node.items():
            if isinstance(value, dict) and value:
                walk(value)
            else:
                leaves.append((node, key))

    walk(doc)
    node, key = rng.choice(leaves)
    value = node[key]
    if isinstance(value, bool) or isinstance(value, str):
        node[key] = [1, 2]
    elif isinstance(value, (int, float)):
        node[key] = "many"
    elif value is None:
        node[key] = {"a": [1]}
    else:
        node[key] = 3.5
    return header + yaml.safe_dump(doc, sort_keys=False).encode()


MUTATORS: dict[str, Mutator] = {
    "truncate": truncate, "bitflip": flip_bits, "empty": empty, "random": random_bytes,
    "text": text, "directory": directory, "wrong_type": wrong_type,
}


def write_mutant(good: Path, dest: Path, how: str, rng: random.Random,
                 mutator: Mutator | None = None) -> Path:
    """``dest`` holding ``good`` mutated by ``how`` (a directory for ``directory``)."""
    data = (mutator or MUTATORS[how])(good.read_bytes(), rng)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_dir():
        shutil.rmtree(dest)
    elif dest.exists():
        dest.unlink()
    if data is None:
        dest.mkdir()
        (dest / "inside").write_bytes(good.read_bytes()[:64])
    else:
        dest.write_bytes(data)
    return dest


def judge(proc: Proc, path: Path, same_answer: Callable[[Proc], bool],
          must_name: bool = True, names: tuple[str, ...] = (),
          one_line: bool = False) -> list[str]:
    """What is wrong with how a command met a bad file (empty: nothing). ``names``: other
    words an error may name instead of the file (a config's keys); ``one_line``: the error
    must be the last line of stderr and start with ``error:``."""
    if proc.timed_out:
        return [f"hang: no answer within the time limit on {path.name}"]
    problems = []
    if "Traceback (most recent call last)" in proc.stderr:
        last = proc.stderr.strip().splitlines()[-1][:300]
        problems.append(f"traceback: {last}")
    if proc.returncode == 0:
        if not same_answer(proc):
            problems.append("wrong answer: exit 0 with an answer other than the intact file's")
        return problems
    tail = (proc.stderr.strip().splitlines()[-1:] or [""])[0]
    if must_name and not any(n in proc.stderr for n in (str(path), path.name, *names)):
        problems.append(f"error does not name {path.name}: {tail[:300]}")
    if one_line and not tail.startswith("error: "):
        problems.append(f"no one-line error at the end: {tail[:300]}")
    return problems


@dataclass
class Case:
    """One bad file and the command that reads it."""

    name: str
    path: Path
    run: Callable[[], Proc]
    same_answer: Callable[[Proc], bool]
    must_name: bool = True  # the error must name the file (or one of ``names``)
    names: tuple[str, ...] = ()
    one_line: bool = False


def run_cases(cases: list[Case]) -> Tally:
    tally = Tally()
    for case in cases:
        proc = case.run()
        problems = judge(proc, case.path, case.same_answer, case.must_name, case.names,
                         case.one_line)
        tally.add(case.name, problems, exit=proc.returncode)
    return tally


# --- images for `xnorlab predict` -------------------------------------------------------------

def image_variants(pixels: np.ndarray, folder: Path) -> dict[str, tuple[Path, bool]]:
    """PNG files made from one 28x28 uint8 image: name -> (path, must_be_refused).

    ``gray_rgb`` (the same pixels in three equal channels) must be accepted with the grey
    image's answer; the others must be refused.
    """
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, tuple[Path, bool]] = {}

    def save(name: str, img: Image.Image, refuse: bool) -> None:
        path = folder / f"{name}.png"
        img.save(path)
        out[name] = (path, refuse)

    save("gray", Image.fromarray(pixels, "L"), False)
    save("gray_rgb", Image.fromarray(np.repeat(pixels[..., None], 3, axis=2), "RGB"), False)
    save("wrong_size", Image.fromarray(pixels[:27, :27], "L"), True)
    save("wide_rgb", Image.fromarray(np.zeros((40, 50, 3), np.uint8), "RGB"), True)
    save("16bit", Image.fromarray(pixels.astype(np.uint16) * 257), True)
    (folder / "text.png").write_text("not an image\n")
    out["text"] = (folder / "text.png", True)
    (folder / "empty.png").write_bytes(b"")
    out["empty"] = (folder / "empty.png", True)
    good = (folder / "gray.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    out["truncated"] = (folder / "truncated.png", True)
    (folder / "dir.png").mkdir(exist_ok=True)
    out["dir"] = (folder / "dir.png", True)
    (folder / "missing.png").unlink(missing_ok=True)
    out["missing"] = (folder / "missing.png", True)
    return out
