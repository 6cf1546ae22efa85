"""DVC stage `export@<run>`: pack a trained binarized network and prove the engine exact.

Fails (exit 1) if the packed engine disagrees with PyTorch on any integer pre-activation or any
predicted class of the test set.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from xnorlab.bench.exactness import compare, to_uint8
from xnorlab.bench.vit_exactness import compare_vit
from xnorlab.data.datamodule import ImageDataModule
from xnorlab.entry import entry_point
from xnorlab.io import exit_on_full_disk, write_json
from xnorlab.models.kmeans_io import is_kmeans_checkpoint, load_kmeans_checkpoint
from xnorlab.packed.engine import PackedEngine
from xnorlab.packed.export import ExportError, export_kmeans, export_to_file, jsonable
from xnorlab.packed.export_vit import export_vit, is_vit
from xnorlab.schema import ConfigError, ExportConfig, checked
from xnorlab.train.measure import state_dict_bytes
from xnorlab.train.module import Classifier

log = logging.getLogger("xnorlab.export")


@entry_point("export")
def main(cfg: DictConfig) -> None:
    try:
        c = checked(cfg, ExportConfig, "export")
    except ConfigError as err:
        sys.exit(f"error: {err}")
    with exit_on_full_disk():
        export(c)


def load_checkpoint(ckpt: Path, run: str) -> Classifier:
    """The trained module; a torn, foreign or missing checkpoint exits with one error line."""
    if not ckpt.exists():
        sys.exit(f"error: {ckpt} not found; train the run first (dvc repro train@{run})")
    try:
        return Classifier.load_from_checkpoint(ckpt, map_location="cpu")
    except Exception as err:  # torch.load and Lightning raise many types for a bad file
        why = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        sys.exit(f"error: {ckpt} is not a readable checkpoint ({type(err).__name__}: {why}); "
                 "retrain the run")


def export(c: dict) -> None:
    run, paths, check = c["run"], c["paths"], c["check"]
    run_dir = Path(paths["models_dir"]) / run
    if c["seed"] is not None:
        run_dir = run_dir / f"seed{c['seed']}"
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    if ckpt.exists() and is_kmeans_checkpoint(ckpt):
        export_kmeans_run(c, ckpt)
        return
    module = load_checkpoint(ckpt, run)
    if is_vit(module.model):
        export_vit_run(c, module, ckpt)
        return
    run_cfg = module.cfg
    shape = tuple(run_cfg["dataset"]["shape"])
    out = Path(paths["packed_dir"])
    out.mkdir(parents=True, exist_ok=True)
    packed = out / f"{run}.xnor"
    try:
        export_to_file(module.model, packed, shape, config=run_cfg,
                       metadata={"run": run, "checkpoint": str(ckpt)})
    except ExportError as err:
        sys.exit(f"error: {run} cannot be packed: {err}")

    ds = run_cfg["dataset"]
    dm = ImageDataModule(ds, Path(run_cfg["data"]["raw_dir"]) / ds["name"], val_size=1,
                         eval_limit=check["limit"])
    dm.setup()
    test_x, _ = dm.splits["test"]
    engine = PackedEngine.load(packed)
    result = compare(module.model, engine, test_x, chunk=check["chunk"])
    summary = {
        "run": run,
        "checkpoint": str(ckpt),
        "packed_bytes": packed.stat().st_size,
        "float_checkpoint_bytes": ckpt.stat().st_size,
        "float32_state_dict_bytes": state_dict_bytes(module.model),
        "exactness": result.as_dict(),
    }
    summary["size_ratio"] = summary["float32_state_dict_bytes"] / summary["packed_bytes"]
    write_json(out / f"{run}.json", summary)
    log.info("%s", json.dumps(summary))
    if not result.exact:
        sys.exit(
            f"error: packed engine disagrees with torch on {run}: "
            f"{result.mismatched_predictions} of {result.n_images} predictions, "
            f"{result.mismatched_preactivations} of {result.preactivation_values} pre-activations"
        )


def _test_images(run_cfg: dict, check: dict):
    ds = run_cfg["dataset"]
    dm = ImageDataModule(ds, Path(run_cfg["data"]["raw_dir"]) / ds["name"], val_size=1,
                         eval_limit=check["limit"])
    dm.setup()
    return dm.splits["test"][0]


def export_vit_run(c: dict, module: Classifier, ckpt: Path) -> None:
    """Binarized ViT: a version-2 graph. Fails unless every binary layer is exact given
    torch's input bits (a BinaryConnect layer: within the stated float tolerance given torch's
    input); end-to-end prediction differences (float rounding of the real ops) are listed with
    their margins in the report."""
    run, paths, check = c["run"], c["paths"], c["check"]
    run_cfg = module.cfg
    shape = tuple(run_cfg["dataset"]["shape"])
    out = Path(paths["packed_dir"])
    out.mkdir(parents=True, exist_ok=True)
    packed = out / f"{run}.xnor"
    meta = {"run": run, "checkpoint": str(ckpt), "config": jsonable(run_cfg)}
    try:
        export_vit(module.model, shape, backend="numpy", metadata=meta).save(packed)
    except ExportError as err:
        sys.exit(f"error: {run} cannot be packed: {err}")
    engine = PackedEngine.load(packed)
    result = compare_vit(module.model, engine, _test_images(run_cfg, check), chunk=check["chunk"])
    binary = [module.model.get_submodule(n.name) for n in engine.binary_nodes]
    float_binary = sum(4 * m.weight.numel() for m in binary)
    summary = {
        "run": run, "checkpoint": str(ckpt), "format_version": 2,
        "packed_bytes": packed.stat().st_size,
        "float32_state_dict_bytes": state_dict_bytes(module.model),
        "binary_weight_bytes": engine.binary_weight_bytes(),
        "float32_binary_weight_bytes": float_binary,
        "exactness": result.as_dict(),
    }
    summary["size_ratio"] = summary["float32_state_dict_bytes"] / summary["packed_bytes"]
    summary["binary_weight_ratio"] = float_binary / summary["binary_weight_bytes"]
    write_json(out / f"{run}.json", summary)
    log.info("%s", json.dumps(summary))
    if not result.exact:
        sys.exit(f"error: packed ViT disagrees with torch on {run} given the same input bits: "
                 f"{result.mismatched_preactivations} pre-activations, "
                 f"{result.mismatched_affine_outputs} affine outputs, "
                 f"{result.mismatched_folded_bits} folded GELU bits, "
                 f"{result.real_outputs_outside_tolerance} BinaryConnect outputs outside the "
                 "float tolerance")


def export_kmeans_run(c: dict, ckpt: Path) -> None:
    """K-means on binarized pixels: packed centroids; assignments must equal the model's."""
    run, paths, check = c["run"], c["paths"], c["check"]
    km, run_cfg = load_kmeans_checkpoint(ckpt)
    shape = tuple(run_cfg["dataset"]["shape"])
    out = Path(paths["packed_dir"])
    out.mkdir(parents=True, exist_ok=True)
    packed = out / f"{run}.xnor"
    try:
        engine = export_kmeans(km, shape, backend="numpy",
                               metadata={"run": run, "checkpoint": str(ckpt), "config": run_cfg})
    except ExportError as err:
        sys.exit(f"error: {run} cannot be packed: {err}")
    engine.save(packed)
    ds = run_cfg["dataset"]
    dm = ImageDataModule(ds, Path(run_cfg["data"]["raw_dir"]) / ds["name"], val_size=1,
                         eval_limit=check["limit"])
    dm.setup()
    test_x, _ = dm.splits["test"]
    u8 = to_uint8(test_x)
    flat = test_x.numpy().reshape(len(u8), -1)  # what the train stage's model saw
    engine = PackedEngine.load(packed)
    got = np.argmax(engine.scores(u8), axis=1)
    want = km.predict(flat)
    dist_bad = int(np.count_nonzero(engine.forward_int(u8)[0] != km.transform(flat)))
    result = {"n_images": len(u8), "mismatched_assignments": int(np.count_nonzero(got != want)),
              "mismatched_predictions": int(np.count_nonzero(
                  engine.predict(u8) != km.predict_labels(flat))),
              "mismatched_distances": dist_bad}
    result["exact"] = not (result["mismatched_assignments"] or result["mismatched_predictions"]
                           or dist_bad)
    centers = km.cluster_centers_
    summary = {"run": run, "packed_bytes": packed.stat().st_size,
               "float32_centroid_bytes": 4 * centers.size, "exactness": result}
    summary["size_ratio"] = summary["float32_centroid_bytes"] / summary["packed_bytes"]
    # k centroids are a few KB: the header (run config, versions) is most of the file
    summary["packed_array_bytes"] = engine.model_bytes()
    summary["array_size_ratio"] = summary["float32_centroid_bytes"] / engine.model_bytes()
    write_json(out / f"{run}.json", summary)
    log.info("%s", json.dumps(summary))
    if not result["exact"]:
        sys.exit(f"error: packed K-means disagrees with the model on {run}: {result}")


if __name__ == "__main__":
    main()
