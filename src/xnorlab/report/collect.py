"""MLflow runs of a suite -> one record per configuration: for each of the suite's seeds its
latest FINISHED run, and the mean and spread over those seeds; or why there is none.

A configuration is a run name (`<dataset>-<model>-<quant>` or a suite key). The suite config
says which configurations and seeds to expect, so a run that is missing or failed still gets a
row (shown as a dash with a note) instead of silently disappearing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from xnorlab.schema import method_label, quant_presets, suite_seeds
from xnorlab.stats import mean_std

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
class SeedRun:
    """One seed's latest FINISHED run of a configuration."""

    seed: int
    run_id: str
    metrics: dict[str, float]
    params: dict[str, str]


@dataclass
class Record:
    """A slot and its seeds' latest FINISHED runs (`run_id` None: `problem` says why).

    `metrics` and `std` are the mean and sample standard deviation over the finished seeds;
    `run_id`, `tags` and `params` are those of the first finished seed's run.
    """

    slot: Slot
    run_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    problem: str | None = None
    seeds: list[SeedRun] = field(default_factory=list)
    std: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """How many seeds finished."""
        return len(self.seeds)

    def seed_values(self, name: str) -> dict[int, float]:
        """`name` per finished seed that logged it."""
        return {r.seed: r.metrics[name] for r in self.seeds if name in r.metrics}

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
    configuration's run for a seed is the newest FINISHED one whose name, dataset, model and
    quant tags, distillation and seed match. With `include_unlisted`, tagged runs the suite does
    not list are reported too (one record per run name, over the seeds found).
    """
    name = suite["name"]
    seeds = suite_seeds(suite)
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
    records = []
    for slot in slots:
        matching = [r for r in runs if _matches(r, slot)]
        expected = seeds if slot.listed else sorted({run_seed(r) for r in matching})
        records.append(_record(slot, matching, expected, name, experiment))
    return sorted(records, key=lambda r: order_key(r.slot, suite.get("datasets")))


def run_seed(run: Run) -> int:
    """The seed a training run was trained with (its tag; older runs: the param)."""
    value = run.data.tags.get("seed", run.data.params.get("seed", "0"))
    try:
        return int(value)
    except ValueError:
        return -1  # not a seed of any suite


def _record(slot: Slot, runs: list[Run], seeds: list[int], suite: str,
            experiment: str) -> Record:
    found: list[SeedRun] = []
    for seed in seeds:
        for run in (r for r in runs if run_seed(r) == seed):  # newest first
            if run.info.status == "FINISHED":
                found.append(SeedRun(seed, run.info.run_id, dict(run.data.metrics),
                                     dict(run.data.params)))
                break
    if not found:
        if runs:
            latest = runs[0]
            problem = (f"`{slot.key}`: no FINISHED run; the latest ({latest.info.run_id[:8]}) "
                       f"is {latest.info.status}.")
        else:  # the same words for every such cell, so they share one note
            problem = (f"Not trained yet: no run of this configuration in experiment "
                       f"`{experiment}` tagged suite={suite}.")
        return Record(slot, problem=problem)
    first = next(r for r in runs if r.info.run_id == found[0].run_id)
    keys = [k for k in found[0].metrics if all(k in f.metrics for f in found)]
    stats = {k: mean_std([f.metrics[k] for f in found]) for k in keys}
    missing = [s for s in seeds if s not in {f.seed for f in found}]
    problem = (f"`{slot.key}`: {len(found)} of {len(seeds)} seeds finished (no FINISHED run "
               f"for seed {', '.join(map(str, missing))}).") if missing else None
    return Record(slot, found[0].run_id, {k: m for k, (m, _) in stats.items()},
                  dict(first.data.tags), problem, found, {k: sd for k, (_, sd) in stats.items()},
                  found[0].params)


def metric_history(client: MlflowClient, run_id: str, metric: str) -> list[tuple[int, float]]:
    """(step, value) of a per-epoch metric, one value per step (the last logged, if a resumed
    run logged a step twice), by step."""
    by_step: dict[int, tuple[int, float]] = {}
    for m in client.get_metric_history(run_id, metric):
        if m.step not in by_step or m.timestamp >= by_step[m.step][0]:
            by_step[m.step] = (m.timestamp, m.value)
    return [(step, by_step[step][1]) for step in sorted(by_step)]


def mean_curve(histories: list[list[tuple[int, float]]]) -> list[tuple[int, float, float]]:
    """(step, mean, standard deviation) over seeds' histories, at the steps all of them have."""
    if not histories:
        return []
    steps = set.intersection(*({step for step, _ in h} for h in histories))
    by_seed = [dict(h) for h in histories]
    return [(step, *mean_std([h[step] for h in by_seed])) for step in sorted(steps)]
