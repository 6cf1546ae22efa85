"""k-means baseline (NumPy, vectorized) with Euclidean or Hamming metric.

* ``metric="euclidean"``: real pixels, squared Euclidean distances via
  ``|x|^2 - 2 x.c + |c|^2`` (one matmul per iteration), centroids are means.
* ``metric="hamming"``: pixels binarized as ``x >= threshold`` (bit 1 = +1, as everywhere in the
  project), kept as +-1 float32 so that ``hamming(a, c) = (d - a.c) / 2`` is one matmul (exact:
  integer sums far below 2**24). Centroids are the majority bit of their members, ties -> 1
  (consistent with sign(0) = +1).

Input: an array of shape (n, ...) flattened to (n, d); ``uint8`` input is divided by 255 first,
so both metrics see pixels in [0, 1].
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["KMeans"]

_METRICS = ("euclidean", "hamming")


class KMeans:
    """Seeded k-means with k-means++ initialisation (greedy, ``2 + log k`` trials per centre).

    Attributes after :meth:`fit`: ``cluster_centers_`` (float (k, d) for euclidean, uint8 bits
    for hamming), ``labels_`` (training assignment), ``inertia_`` (sum of squared Euclidean or of
    Hamming distances), ``n_iter_``; after :meth:`map_clusters_to_labels`: ``cluster_to_label_``.
    """

    def __init__(
        self,
        k: int = 10,
        metric: str = "euclidean",
        max_iter: int = 100,
        tol: float = 1e-4,
        n_init: int = 1,
        seed: int = 0,
        threshold: float = 0.5,
    ) -> None:
        if metric not in _METRICS:
            raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(_METRICS)}")
        if k < 1 or max_iter < 1 or n_init < 1:
            raise ValueError("k, max_iter and n_init must be >= 1")
        self.k = k
        self.metric = metric
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.seed = seed
        self.threshold = threshold
        self._centers: np.ndarray | None = None  # float32 (k, d); +-1 for hamming
        self.labels_: np.ndarray | None = None
        self.inertia_: float = math.inf
        self.n_iter_: int = 0
        self.cluster_to_label_: np.ndarray | None = None

    # -- representation -------------------------------------------------------------------

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        scale = 1.0 / 255.0 if x.dtype == np.uint8 else 1.0
        x = x.reshape(len(x), -1).astype(np.float32) * np.float32(scale)
        if self.metric == "hamming":
            return np.where(x >= self.threshold, np.float32(1.0), np.float32(-1.0))
        return x

    def _dist(self, x: np.ndarray, c: np.ndarray, xx: np.ndarray | None = None) -> np.ndarray:
        """(n, m) distances between prepared rows ``x`` and centres ``c``."""
        dot = x @ c.T
        if self.metric == "hamming":
            return (np.float32(x.shape[1]) - dot) * np.float32(0.5)
        if xx is None:
            xx = np.einsum("ij,ij->i", x, x)
        cc = np.einsum("ij,ij->i", c, c)
        return np.maximum(xx[:, None] - 2.0 * dot + cc[None, :], 0.0)

    def _potential_weight(self, d: np.ndarray) -> np.ndarray:
        # k-means++ samples with probability ~ D^2; euclidean d is already squared.
        return d.astype(np.float64) if self.metric == "euclidean" else d.astype(np.float64) ** 2

    # -- fitting --------------------------------------------------------------------------

    def _init_pp(self, x: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = len(x)
        trials = 2 + int(math.log(self.k))
        centers = [int(rng.integers(n))]
        closest = self._dist(x, x[centers[:1]], xx)[:, 0]
        for _ in range(1, self.k):
            w = self._potential_weight(closest)
            total = w.sum()
            if total <= 0:  # fewer distinct points than k
                cand = rng.integers(n, size=trials)
            else:
                cand = rng.choice(n, size=trials, p=w / total)
            d_cand = np.minimum(closest[:, None], self._dist(x, x[cand], xx))
            best = int(np.argmin(self._potential_weight(d_cand).sum(axis=0)))
            centers.append(int(cand[best]))
            closest = d_cand[:, best]
        return x[centers].copy()

    def _update(self, x: np.ndarray, labels: np.ndarray, d_own: np.ndarray) -> np.ndarray:
        onehot = np.zeros((len(x), self.k), dtype=np.float32)
        onehot[np.arange(len(x)), labels] = 1.0
        sums = onehot.T @ x
        counts = onehot.sum(axis=0)
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            # Re-seed empty clusters with the points farthest from their centre.
            far = np.argsort(-d_own, kind="stable")[: len(empty)]
            sums[empty] = x[far]
            counts[empty] = 1.0
        if self.metric == "hamming":
            return np.where(sums >= 0, np.float32(1.0), np.float32(-1.0))
        return sums / counts[:, None]

    def _run(self, x: np.ndarray, xx: np.ndarray, rng: np.random.Generator):
        c = self._init_pp(x, xx, rng)
        tol = self.tol * float(np.mean(np.var(x, axis=0))) if self.metric == "euclidean" else 0.0
        labels = None
        n_iter = 0
        while n_iter < self.max_iter:
            n_iter += 1
            d = self._dist(x, c, xx)
            new_labels = np.argmin(d, axis=1)
            d_own = d[np.arange(len(x)), new_labels]
            if labels is not None and np.array_equal(labels, new_labels):
                break
            labels = new_labels
            new_c = self._update(x, labels, d_own)
            shift = float(((new_c - c) ** 2).sum())
            c = new_c
            if shift <= tol:
                break
        d = self._dist(x, c, xx)
        labels = np.argmin(d, axis=1)
        inertia = float(d[np.arange(len(x)), labels].sum(dtype=np.float64))
        return c, labels, inertia, n_iter

    def fit(self, x: np.ndarray) -> KMeans:
        """Cluster ``x`` (n, ...); keeps the best of ``n_init`` seeded runs (lowest inertia)."""
        xp = self._prepare(x)
        if len(xp) < self.k:
            raise ValueError(f"need at least k={self.k} samples, got {len(xp)}")
        xx = np.einsum("ij,ij->i", xp, xp)
        rng = np.random.default_rng(self.seed)
        best = None
        for _ in range(self.n_init):
            run = self._run(xp, xx, rng)
            if best is None or run[2] < best[2]:
                best = run
        self._centers, self.labels_, self.inertia_, self.n_iter_ = best
        self.cluster_to_label_ = None
        return self

    # -- state (the train stage saves it as the run's checkpoint, the export stage packs it) --

    def state(self) -> dict:
        """The fitted model as plain data (tensors-free: NumPy arrays, numbers, strings)."""
        return {
            "k": self.k, "metric": self.metric, "threshold": float(self.threshold),
            "centers": self._fitted().copy(),
            "cluster_to_label": None if self.cluster_to_label_ is None
            else np.asarray(self.cluster_to_label_, np.int64).copy(),
        }

    @classmethod
    def from_state(cls, state: dict) -> KMeans:
        """Inverse of :meth:`state`."""
        km = cls(k=int(state["k"]), metric=str(state["metric"]),
                 threshold=float(state["threshold"]))
        km._centers = np.asarray(state["centers"], dtype=np.float32)
        c2l = state.get("cluster_to_label")
        km.cluster_to_label_ = None if c2l is None else np.asarray(c2l, np.int64)
        return km

    # -- inference ------------------------------------------------------------------------

    @property
    def cluster_centers_(self) -> np.ndarray:
        """Centroids: float (k, d) for euclidean, uint8 bits (k, d) for hamming."""
        c = self._fitted()
        return (c > 0).astype(np.uint8) if self.metric == "hamming" else c

    def _fitted(self) -> np.ndarray:
        if self._centers is None:
            raise RuntimeError("KMeans is not fitted; call fit() first")
        return self._centers

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(n, k) distances to the centroids (squared Euclidean, or Hamming counts)."""
        return self._dist(self._prepare(x), self._fitted())

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Index of the nearest centroid for each row of ``x``."""
        return np.argmin(self.transform(x), axis=1)

    def map_clusters_to_labels(
        self, y: np.ndarray, x: np.ndarray | None = None, num_classes: int | None = None
    ) -> np.ndarray:
        """Label each cluster by majority vote of ``y`` over its members (the training
        assignment ``labels_``, or ``predict(x)`` if ``x`` is given). Empty clusters get the most
        frequent label. Returns and stores ``cluster_to_label_`` (shape (k,))."""
        y = np.asarray(y).astype(np.int64)
        assign = self.predict(x) if x is not None else self.labels_
        if assign is None:
            raise RuntimeError("KMeans is not fitted; call fit() first")
        if len(assign) != len(y):
            raise ValueError("y must have one label per clustered sample")
        nc = int(num_classes if num_classes is not None else y.max() + 1)
        votes = np.zeros((self.k, nc), dtype=np.int64)
        np.add.at(votes, (assign, y), 1)
        mapping = votes.argmax(axis=1)
        mapping[votes.sum(axis=1) == 0] = np.bincount(y, minlength=nc).argmax()
        self.cluster_to_label_ = mapping
        return mapping

    def predict_labels(self, x: np.ndarray) -> np.ndarray:
        """Class predicted for each row: the label of its nearest cluster."""
        if self.cluster_to_label_ is None:
            raise RuntimeError("call map_clusters_to_labels() first")
        return self.cluster_to_label_[self.predict(x)]

    def score(self, x: np.ndarray, y: np.ndarray) -> float:
        """Accuracy of :meth:`predict_labels` against ``y``."""
        return float(np.mean(self.predict_labels(x) == np.asarray(y)))

    def hardest_examples(self, x: np.ndarray, y: np.ndarray, n: int = 10) -> np.ndarray:
        """Indices (into ``x``) of up to ``n`` misclassified examples, farthest from their
        assigned centroid first."""
        if self.cluster_to_label_ is None:
            raise RuntimeError("call map_clusters_to_labels() first")
        d = self.transform(x)
        assign = np.argmin(d, axis=1)
        d_own = d[np.arange(len(d)), assign]
        wrong = np.flatnonzero(self.cluster_to_label_[assign] != np.asarray(y))
        order = np.argsort(-d_own[wrong], kind="stable")
        return wrong[order[:n]]
