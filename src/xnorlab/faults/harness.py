"""The fault-injection harness: one reference run, then every fault class of a profile."""

from __future__ import annotations

import random
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from xnorlab.faults import concurrency, corrupt, disk, kills
from xnorlab.faults.outcome import Tally, summary
from xnorlab.faults.workspace import (
    Proc,
    Sandbox,
    case_env,
    make_empty_store,
    run_cmd,
    write_tiny_mnist,
)


def _log(msg: str) -> None:
    print(f"[faults] {msg}", file=sys.stderr, flush=True)


def predict_cmd(model: Path, *inputs: Path, labels: Path | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "xnorlab.cli", "predict", str(model), *map(str, inputs),
           "--backend", "numpy"]
    return cmd + (["--labels", str(labels)] if labels else [])


def _same(expected: str) -> Callable[[Proc], bool]:
    return lambda proc: proc.stdout == expected


def predict_cases(ref: kills.Reference, work: Path, cfg: dict[str, Any],
                  rng: random.Random) -> list[corrupt.Case]:
    """Mutated .xnor files, IDX files and PNG images, each given to `xnorlab predict`."""
    sb = ref.sandbox
    packed = sb.root / "packed" / f"{sb.run_name}.xnor"
    images = sb.raw / "mnist" / "t10k-images-idx3-ubyte"
    labels = sb.raw / "mnist" / "t10k-labels-idx1-ubyte"
    intact = run_cmd(predict_cmd(packed, images, labels=labels))
    if intact.returncode != 0:
        raise RuntimeError(f"predict on intact files failed: {intact.stderr[-800:]}")
    t = cfg["timeout_s"]
    cases = []
    no_labels = _no_labels(packed, images)  # once: the answer every images case must give

    def add(kind: str, how: str, path: Path, cmd: list[str], expected: str) -> None:
        cases.append(corrupt.Case(f"{kind}:{how}", path,
                                  lambda: run_cmd(cmd, timeout=t), _same(expected)))

    for i, how in enumerate(_hows(cfg["mutations_per_kind"])):
        bad = corrupt.write_mutant(packed, work / "xnor" / f"{i}-{how}.xnor", how, rng)
        add("xnor", how, bad, predict_cmd(bad, images, labels=labels), intact.stdout)
        bad = corrupt.write_mutant(images, work / "idx" / f"{i}-{how}-images", how, rng,
                                   _header_only(how))
        add("idx-images", how, bad, predict_cmd(packed, bad), no_labels)
        bad = corrupt.write_mutant(labels, work / "idx" / f"{i}-{how}-labels", how, rng,
                                   _header_only(how))
        add("idx-labels", how, bad, predict_cmd(packed, images, labels=bad), intact.stdout)
    add("idx-images", "labels-given-as-images", labels, predict_cmd(packed, labels), "")
    from xnorlab.data.idx import read_idx

    gray = read_idx(images)[0]
    first = no_labels.splitlines()[0]
    for name, (path, refuse) in corrupt.image_variants(gray, work / "png").items():
        add("png", name, path, predict_cmd(packed, path), "" if refuse else first + "\n")
    return cases


def _no_labels(packed: Path, images: Path) -> str:
    return run_cmd(predict_cmd(packed, images)).stdout


def _hows(n: int) -> list[str]:
    """``n`` rounds of truncation and bit flips, plus one of each foreign kind."""
    return [h for _ in range(n) for h in ("truncate", "bitflip")] + [
        "empty", "random", "text", "directory"]


def _header_only(how: str) -> corrupt.Mutator | None:
    # A flip in an IDX payload is a different, valid image; only header flips are faults.
    if how != "bitflip":
        return None
    return lambda data, rng: corrupt.flip_bits(data, rng, 0, 16)


def checkpoint_cases(ref: kills.Reference, work: Path, cfg: dict[str, Any],
                     rng: random.Random) -> list[corrupt.Case]:
    """Mutated best.ckpt given to the export stage; exit 0 must give the intact .xnor."""
    sb = ref.sandbox
    good = sb.out_dir / "checkpoints" / "best.ckpt"
    want = _network(sb.root / "packed" / f"{sb.run_name}.xnor")
    cases = []
    for i, how in enumerate(_hows(cfg["checkpoint_rounds"])[: cfg["checkpoint_cases"]]):
        case = Sandbox(work / f"ckpt-{i}", sb.raw, sb.train_args)
        shutil.copytree(sb.out_dir, case.out_dir)
        bad = corrupt.write_mutant(good, case.out_dir / "checkpoints" / "best.ckpt", how, rng)
        out = case.root / "packed"

        def same(proc: Proc, out: Path = out) -> bool:
            f = out / f"{sb.run_name}.xnor"
            return f.exists() and _network(f) == want

        cmd = case.export_cmd(inject=False, out_dir=out)
        cases.append(corrupt.Case(f"checkpoint:{how}", bad,
                                  lambda cmd=cmd: run_cmd(cmd, env=case_env()), same))
    return cases


def _network(packed: Path) -> bytes:
    """A packed file's layers and input shape, without its metadata (which names paths)."""
    import pickle

    from xnorlab.packed.format import load_packed

    model = load_packed(packed)
    return pickle.dumps((model.layers, model.input_shape))


# the conf/ file mutated per entry point, in a copy given with --config-path
CONFIG_TARGETS = {"train": "trainer/smoke.yaml", "export": "export.yaml"}


def _config_hows(rounds: int) -> list[str]:
    """``rounds`` of truncation, bit flips and a value of the wrong type, then empty and a
    directory in place of the file."""
    return [h for _ in range(rounds) for h in ("truncate", "bitflip", "wrong_type")] + [
        "empty", "directory"]


def _config_names(intact: Path, rel: str) -> tuple[str, ...]:
    """What an error about a mutated conf file may name instead of its path: its group/name
    or one of its keys (a value of the wrong type is best reported by its key)."""
    keys = [k for k in (yaml.safe_load(intact.read_text()) or {}) if k != "defaults"]
    return (rel.removesuffix(".yaml"), *(f"{q}{k}" for k in keys for q in ("`", "'")),
            *(f"{k}." for k in keys))


def config_cases(ref: kills.Reference, work: Path, cfg: dict[str, Any],
                 rng: random.Random) -> list[corrupt.Case]:
    """Mutated conf/ files (in a copy, via --config-path) given to the entry points that read
    them, and mutated config.yaml files saved beside an unfinished run (read on resume). Exit
    0 must give the intact run's answer; an error must be one line naming the file or key."""
    sb = ref.sandbox
    conf_copy = sb.root.parent / "conf-copy"
    want_xnor = _network(sb.root / "packed" / f"{sb.run_name}.xnor")
    cases = []
    for target in cfg["config_targets"]:
        rel = CONFIG_TARGETS[target]
        names = _config_names(conf_copy / rel, rel)
        for i, how in enumerate(_config_hows(cfg["config_rounds"])):
            case = Sandbox(work / f"conf-{target}-{i}", sb.raw, sb.train_args)
            conf = case.root / "conf"
            shutil.copytree(conf_copy, conf)
            bad = corrupt.write_mutant(conf_copy / rel, conf / rel, how, rng)
            if target == "train":
                cmd, same = case.train_cmd(inject=False), _trained_like(ref, case)
            else:  # the export reads the reference's checkpoint, writes its own .xnor
                out = case.root / "packed"
                cmd = sb.export_cmd(inject=False, out_dir=out)

                def same(proc: Proc, out: Path = out) -> bool:
                    f = out / f"{sb.run_name}.xnor"
                    return f.exists() and _network(f) == want_xnor
            cmd.insert(2, f"--config-path={conf}")
            cases.append(corrupt.Case(f"config-{target}:{how}", bad,
                                      lambda cmd=cmd: run_cmd(cmd, env=case_env()), same,
                                      names=names, one_line=True))
    saved = _config_hows(1) * 2
    for i, how in enumerate(saved[: cfg["saved_config_cases"]]):
        case = Sandbox(work / f"saved-{i}", sb.raw, sb.train_args)
        shutil.copytree(sb.out_dir, case.out_dir)
        (case.out_dir / "metrics.json").unlink()  # an unfinished run: it will try to resume
        bad = corrupt.write_mutant(sb.out_dir / "config.yaml", case.out_dir / "config.yaml",
                                   how, rng)
        cmd = case.train_cmd(inject=False)
        cases.append(corrupt.Case(f"saved-config:{how}", bad,
                                  lambda cmd=cmd: run_cmd(cmd, env=case_env()),
                                  _trained_like(ref, case), one_line=True))
    return cases


def _trained_like(ref: kills.Reference, case: Sandbox) -> Callable[[Proc], bool]:
    def same(proc: Proc) -> bool:
        f = case.out_dir / "metrics.json"
        if not f.exists():
            return False
        got = yaml.safe_load(f.read_text())
        return all(got.get(k) == v for k, v in ref.metrics.items() if not kills._timed(k))
    return same


def disk_cases(ref: kills.Reference, cfg: dict[str, Any]) -> list[tuple[str, str, Callable]]:
    """(name, tmpfs size, make) for checkpoints, MLflow artifacts, .xnor files and reports."""
    sb = ref.sandbox
    free = cfg["free_bytes"]  # case name -> bytes left free
    want_xnor = _files(sb.root / "packed")
    want_reports = _files(sb.root / "reports")

    def train(mount: Path) -> dict:
        case = Sandbox(mount.parent / f"{mount.name}-case", sb.raw, sb.train_args)
        earlier = mount / "models" / "earlier-run"

        def populate(m: Path) -> None:
            shutil.copytree(sb.out_dir, earlier)

        return dict(populate=populate, free_bytes=free["checkpoint"],
                    run=lambda: run_cmd(case.train_cmd(inject=False, out_dir=mount / "models"
                                                       / sb.run_name), env=case_env()),
                    after=lambda proc: _finished_once(case))

    def artifacts(mount: Path) -> dict:
        case = Sandbox(mount.parent / f"{mount.name}-case", sb.raw, sb.train_args)

        def populate(m: Path) -> None:
            shutil.copytree(sb.root / "artifacts", m / "artifacts-earlier")

        return dict(populate=populate, free_bytes=free["mlflow-artifact"],
                    run=lambda: run_cmd(case.train_cmd(inject=False, artifacts=mount),
                                        env=case_env()),
                    after=lambda proc: _finished_once(case))

    def xnor(mount: Path) -> dict:
        def populate(m: Path) -> None:
            shutil.copytree(sb.root / "packed", m, dirs_exist_ok=True)

        return dict(populate=populate, free_bytes=free["xnor"],
                    run=lambda: run_cmd(sb.export_cmd(inject=False, out_dir=mount),
                                        env=case_env()),
                    after=lambda proc: _equal(_files(mount), want_xnor))

    def reports(mount: Path) -> dict:
        case = Sandbox(mount.parent / f"{mount.name}-case", sb.raw, sb.train_args)
        case.root.mkdir(parents=True, exist_ok=True)
        shutil.copy(sb.root / kills.TRAINED_STORE, case.root / "mlflow.db")

        def populate(m: Path) -> None:
            # beside, not in, the output folder: the report skips files whose bytes it would
            # not change, so over its own earlier output it had nothing to write and rightly
            # exited 0 on the full disk (a harness bug, seen in the long profile)
            shutil.copytree(sb.root / "reports", m / "earlier-reports")

        return dict(populate=populate, free_bytes=free["report"],
                    run=lambda: run_cmd(case.report_cmd(inject=False,
                                                        out_dir=mount / "reports"),
                                        env=case_env()),
                    after=lambda proc: _equal(_files(mount / "reports"), want_reports))

    size = cfg["tmpfs_size"]
    makers = {"checkpoint": train, "mlflow-artifact": artifacts, "xnor": xnor,
              "report": reports}
    return [(name, size, makers[name]) for name in cfg["cases"]]


def _files(folder: Path) -> dict[str, bytes]:
    return {k: v for k, v in kills._files(folder).items() if not k.endswith(disk.FILLER)}


def _equal(got: dict[str, bytes], want: dict[str, bytes]) -> list[str]:
    return [f"{name} differs from the reference after freeing space" for name in want
            if got.get(name) != want[name]]


def _finished_once(case: Sandbox) -> list[str]:
    runs = kills.train_runs(case.uri)
    statuses = sorted(r.info.status for r in runs)
    if statuses.count("FINISHED") != 1 or "RUNNING" in statuses:
        return [f"MLflow train runs after the retry: {statuses}"]
    return []


def run_profile(cfg: dict[str, Any], work: Path,
                save: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Every fault class of one profile; returns the report's content. ``save`` gets partial
    results after each kill case and each class, so a run stopped early still reports."""
    rng = random.Random(cfg["seed"])
    started = time.perf_counter()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    raw = work / "raw"
    write_tiny_mnist(raw, cfg["data"]["n_train"], cfg["data"]["n_test"])
    from xnorlab.tracking import project_root

    shutil.copytree(project_root() / "conf", work / "conf-copy")
    make_empty_store(work / "empty-mlflow.db")
    sb = Sandbox(work / "reference", raw, list(cfg["train_args"]))
    _log("reference run of train, export and report")
    # the report stage is only run, killed or starved of disk by some profiles (not CI's)
    need_report = ("kill" in cfg["classes"]
                   and cfg["kills"]["cases"] > kills.PLAN.index(("report", "write"))) or (
                       "disk_full" in cfg["classes"] and "report" in cfg["disk"]["cases"])
    ref = kills.make_reference(sb, report=need_report)
    tallies: dict[str, Tally] = {}
    seconds: dict[str, float] = {}

    def result(complete: bool) -> dict[str, Any]:
        out = summary(tallies)
        out.update(profile=cfg["name"], seed=cfg["seed"], kill_points=ref.counts,
                   complete=complete,
                   seconds=dict(seconds, total=round(time.perf_counter() - started, 1)))
        return out

    def partial() -> None:
        if save:
            save(result(False))

    tallies["kill"] = Tally()
    steps = [
        ("kill", lambda: kills.run_kills(ref, work / "kills", cfg["kills"]["cases"], rng,
                                         tallies["kill"], partial)),
        ("disk_full", lambda: disk.run_disk_cases(work / "disk", disk_cases(ref, cfg["disk"]))),
        ("corrupt", lambda: corrupt.run_cases(
            predict_cases(ref, work / "corrupt", cfg["corrupt"], rng)
            + checkpoint_cases(ref, work / "corrupt", cfg["corrupt"], rng)
            + config_cases(ref, work / "corrupt", cfg["corrupt"], rng))),
        ("concurrent_dvc", lambda: concurrency.run_concurrency(
            work / "dvc", cfg["concurrency"]["cases"])),
    ]
    for name, step in steps:
        if name not in cfg["classes"]:
            continue
        _log(f"{name} ...")
        t0 = time.perf_counter()
        tallies[name] = step()
        seconds[name] = round(time.perf_counter() - t0, 1)
        t = tallies[name]
        _log(f"{name}: tried {t.tried}, survived {t.survived}, lost {t.lost}")
        for failure in t.failures:
            _log(f"  FAILED {failure['case']}: {'; '.join(failure['problems'])[:600]}")
        partial()
    if "kill" not in cfg["classes"]:
        del tallies["kill"]
    return result(True)
