"""MLflow runs of a suite -> one record per configuration: its latest FINISHED run, or why
there is none.

A configuration is a run name (`<dataset>-<model>-<quant>` or a suite key). The suite config
says which configurations to expect, so a run that is missing or failed still gets a row (shown
as a dash with a note) instead of silently disappearing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from xnorlab.schema import method_label, quant_presets

KIND_TAG = "xnorlab.kind"

# Display order and names. Unknown names sort after these, alphabetically, and show as is.
DATASETS = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
MODELS = {"logreg": "LogReg", "mlp": "MLP", "cnn": "CNN", "vit": "ViT", "kmeans": "K-means"}
# Quant methods: their order and labels are the presets' (conf/quant/*.yaml).


def rank(order: dict[str, str] | list[str], name: str) -> tuple[int, str]:
    """Sort key: position in `order`, unknown names after, alphabetically."""
    keys = list(order)
    return (keys.index(name), "") if name in keys else (len(keys), name)


def method_rank(name: str) -> tuple[int, str]:
    """Sort key of a quant method: the presets' order, unknown names after."""
    return rank(list(quant_presets()), name)


def dataset_label(name: str) -> str:
    return DATASETS.get(name, name)


def model_label(name: str) -> str:
    return MODELS.get(name, name)


@dataclass(frozen=True)
class Slot:
    """One configuration the report expects (or found, for unlisted runs)."""

    key: str  # run name
    dataset: str
    model: str
    quant: str
    distilled: bool = False
    listed: bool = True  # listed in the suite config

    @property
    def method(self) -> str:
        """Row key of Table 1: the quant method, `+distill` for distilled students."""
        return f"{self.quant}+distill" if self.distilled else self.quant

    @property
    def method_label(self) -> str:
        label = method_label(self.quant)
        return f"{label}, distilled" if self.distilled else label

    @property
    def binarized(self) -> bool:
        return self.quant != "float"


@dataclass
class Record:
    """A slot and its latest FINISHED run (`run_id` None: `problem` says why)."""

    slot: Slot
    run_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    problem: str | None = None

    @property
    def finished(self) -> bool:
        return self.run_id is not None

    @property
    def short_id(self) -> str:
        return self.run_id[:8] if self.run_id else ""

    def metric(self, name: str) -> float | None:
        return self.metrics.get(name) if self.finished else None


def dataset_rank(name: str, datasets: list[str] | None = None) -> tuple[int, str]:
    """Sort key of a dataset: the suite's order first, then the known ones, then the rest."""
    return rank(list(datasets or []) + [d for d in DATASETS if d not in (datasets or [])], name)


def order_key(slot: Slot, datasets: list[str] | None = None) -> tuple:
    """Deterministic order: dataset (suite order first), model, method (distilled students
    after the rest, as in Table 1), run name."""
    return (dataset_rank(slot.dataset, datasets), rank(MODELS, slot.model), slot.distilled,
            method_rank(slot.quant), slot.key)


def suite_slots(suite: dict[str, Any]) -> list[Slot]:
    """The configurations a suite config lists (`runs` and `distill_runs`)."""
    slots = []
    for group, distilled in (("runs", False), ("distill_runs", True)):
        for key, item in (suite.get(group) or {}).items():
            slots.append(Slot(str(key), str(item["dataset"]), str(item["model"]),
                              str(item["quant"]), distilled=distilled or bool(item.get("teacher"))))
    return slots


def search_all(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Run]:
    """Every matching active run (all pages), newest first, ties broken by run id."""
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string, max_results=1000,
                                  page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    return sorted(runs, key=lambda r: (-(r.info.start_time or 0), r.info.run_id))


def _is_distilled(run: Run) -> bool:
    return run.data.params.get("distill.teacher", "None") not in ("None", "null", "")


def _matches(run: Run, slot: Slot) -> bool:
    tags = run.data.tags
    return (run.info.run_name == slot.key and tags.get("dataset") == slot.dataset
            and tags.get("model") == slot.model and tags.get("quant") == slot.quant
            and _is_distilled(run) == slot.distilled)


def _slot_of(run: Run) -> Slot | None:
    tags = run.data.tags
    if not all(tags.get(k) for k in ("dataset", "model", "quant")) or not run.info.run_name:
        return None
    return Slot(run.info.run_name, tags["dataset"], tags["model"], tags["quant"],
                distilled=_is_distilled(run), listed=False)


def collect(
    client: MlflowClient, experiment: str, suite: dict[str, Any], include_unlisted: bool = False
) -> list[Record]:
    """One record per configuration of the suite, in display order.

    Runs are those of `experiment` tagged `xnorlab.kind=train` and `suite=<suite name>`; a
    configuration's run is the newest FINISHED one whose name, dataset, model and quant tags and
    distillation match. With `include_unlisted`, tagged runs the suite does not list are
    reported too (one record per run name).
    """
    name = suite["name"]
    slots = suite_slots(suite)
    exp = client.get_experiment_by_name(experiment)
    runs = [] if exp is None else search_all(
        client, exp.experiment_id,
        f"tags.`{KIND_TAG}` = 'train' and tags.`suite` = '{name}'",
    )
    if include_unlisted:
        known = {s.key for s in slots}
        for run in runs:
            slot = _slot_of(run)
            if slot is not None and slot.key not in known:
                known.add(slot.key)
                slots.append(slot)
    records = [_record(slot, [r for r in runs if _matches(r, slot)], name, experiment)
               for slot in slots]
    return sorted(records, key=lambda r: order_key(r.slot, suite.get("datasets")))


def _record(slot: Slot, runs: list[Run], suite: str, experiment: str) -> Record:
    for run in runs:  # newest first
        if run.info.status == "FINISHED":
            return Record(slot, run.info.run_id, dict(run.data.metrics), dict(run.data.tags))
    if runs:
        latest = runs[0]
        problem = (f"`{slot.key}`: no FINISHED run; the latest ({latest.info.run_id[:8]}) is "
                   f"{latest.info.status}.")
    else:  # the same words for every such cell, so they share one note
        problem = (f"Not trained yet: no run of this configuration in experiment "
                   f"`{experiment}` tagged suite={suite}.")
    return Record(slot, problem=problem)


def metric_history(client: MlflowClient, run_id: str, metric: str) -> list[tuple[int, float]]:
    """(step, value) of a per-epoch metric, one value per step (the last logged, if a resumed
    run logged a step twice), by step."""
    by_step: dict[int, tuple[int, float]] = {}
    for m in client.get_metric_history(run_id, metric):
        if m.step not in by_step or m.timestamp >= by_step[m.step][0]:
            by_step[m.step] = (m.timestamp, m.value)
    return [(step, by_step[step][1]) for step in sorted(by_step)]
