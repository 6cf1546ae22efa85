"""A bounded load test of a tracking server: C clients log metric batches for T seconds."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient


def _client_loop(client: MlflowClient, run_id: str, batch: int, stop_at: float,
                 latencies: list[float], errors: list[str]) -> None:
    step = 0
    while time.perf_counter() < stop_at:
        now_ms = int(time.time() * 1000)
        metrics = [Metric(f"load_{k}", float(step + k), now_ms, step) for k in range(batch)]
        start = time.perf_counter()
        try:
            client.log_batch(run_id, metrics=metrics)
        except Exception as err:  # counted, not raised: the point is to see them
            errors.append(f"{type(err).__name__}: {str(err)[:300]}")
        else:
            latencies.append(time.perf_counter() - start)
        step += 1


def load_test(uri: str, experiment_id: str, clients: int, seconds: float,
              batch: int) -> dict[str, Any]:
    """Each client thread has its own run and logs `batch` metrics per request, back to back,
    until the time is up. Returns throughput, latency percentiles, errors, and the number of
    stored points (every point of a successful request must be stored)."""
    client = MlflowClient(uri)
    runs = [client.create_run(experiment_id, run_name=f"load-{i}",
                              tags={"xnorlab.kind": "load_test"}).info.run_id
            for i in range(clients)]
    lat: list[list[float]] = [[] for _ in runs]
    errs: list[list[str]] = [[] for _ in runs]
    stop_at = time.perf_counter() + seconds
    threads = [threading.Thread(target=_client_loop,
                                args=(MlflowClient(uri), r, batch, stop_at, lat[i], errs[i]))
               for i, r in enumerate(runs)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    all_lat = np.array([x for xs in lat for x in xs])
    ok = len(all_lat)
    stored = sum(len(client.get_metric_history(r, f"load_{k}")) for r in runs
                 for k in range(batch))
    for r in runs:
        client.set_terminated(r)
    return {
        "clients": clients, "seconds": seconds, "metrics_per_request": batch,
        "elapsed_seconds": elapsed, "requests_ok": ok,
        "errors": sum(len(e) for e in errs),
        "error_kinds": sorted({k.split(":")[0] for e in errs for k in e}),
        "error_examples": sorted({k for e in errs for k in e})[:3],
        "requests_per_second": ok / elapsed,
        "metric_points_per_second": ok * batch / elapsed,
        "latency_p50_ms": float(np.percentile(all_lat, 50) * 1000) if ok else None,
        "latency_p99_ms": float(np.percentile(all_lat, 99) * 1000) if ok else None,
        "latency_max_ms": float(all_lat.max() * 1000) if ok else None,
        "points_sent_ok": ok * batch, "points_stored": stored,
    }
