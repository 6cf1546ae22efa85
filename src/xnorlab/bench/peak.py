"""Peak XOR + popcount throughput of this machine (a ceiling to read kernel speeds against).

:func:`peak_xor_popcount` runs a tight numba loop that keeps 8 key words in registers and
streams a 4 KiB (L1-resident) array through ``acc_j += popcount(x[w] ^ key_j)``; LLVM vectorises
it to one load per 8 XOR + 8 POPCNT + 8 ADD (``vpopcntq zmm`` on AVX-512 VPOPCNTDQ), i.e. the
arithmetic a binary GEMM micro-kernel cannot beat. Throughput is reported in **bit-ops/s**: one
bit-op = one binary multiply-accumulate (one bit of XOR + popcount), the same unit as
``M * N * K / t`` for a binary GEMM (M x K) x (K x N).

    PYTHONPATH=src python -m xnorlab.bench.peak            # one core
    PYTHONPATH=src python -m xnorlab.bench.peak --threads 2
    PYTHONPATH=src python -m xnorlab.bench.peak --gemm     # + binary GEMM vs reference vs peak

:func:`measure_gemm` times the packed engine's fast GEMM kernels (plain and fused-threshold)
and the NumPy reference side by side on one problem, and states each as a fraction of the peak.
"""

from __future__ import annotations

import time
from typing import Any

import numba
import numpy as np
from numba import njit, prange

from ..io import cpu_info
from ..packed.kernels import _popcount

__all__ = ["measure_gemm", "peak_xor_popcount"]

_KEYS = 8  # independent accumulators (x2 after LLVM's interleaving)


@njit(cache=True)
def _peak_loop(x, reps):  # pragma: no cover - compiled
    n = x.shape[0]
    total = 0
    for r in range(reps):
        # keys change every rep so the inner loop cannot be hoisted out of the rep loop
        k0 = np.uint64(r)
        k1 = k0 * np.uint64(3)
        k2 = k0 * np.uint64(5)
        k3 = k0 * np.uint64(7)
        k4 = k0 * np.uint64(11)
        k5 = k0 * np.uint64(13)
        k6 = k0 * np.uint64(17)
        k7 = k0 * np.uint64(19)
        c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = 0
        for w in range(n):
            v = x[w]
            c0 += _popcount(v ^ k0)
            c1 += _popcount(v ^ k1)
            c2 += _popcount(v ^ k2)
            c3 += _popcount(v ^ k3)
            c4 += _popcount(v ^ k4)
            c5 += _popcount(v ^ k5)
            c6 += _popcount(v ^ k6)
            c7 += _popcount(v ^ k7)
        total += c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7
    return total


@njit(parallel=True, cache=True)
def _peak_parallel(xs, reps):  # pragma: no cover - compiled
    out = np.zeros(xs.shape[0], dtype=np.int64)
    for t in prange(xs.shape[0]):
        out[t] = _peak_loop(xs[t], reps)
    return out


def peak_xor_popcount(
    threads: int = 1, words: int = 512, seconds: float = 0.3, repeats: int = 5
) -> dict[str, Any]:
    """Measure peak XOR+popcount throughput.

    Args:
        threads: 1 = one core (plain loop); >1 = that many independent loops under ``prange``.
        words: length of the streamed array (512 words = 4 KiB, L1-resident).
        seconds: target duration of one timed run (the repetition count is calibrated).
        repeats: timed runs; the best and the median are reported.

    Returns a dict with ``bitops_per_s`` (best run), ``bitops_per_s_median``, the settings and
    the machine (``cpu``, ``numba``).
    """
    if threads < 1 or words < 8:
        raise ValueError("threads must be >= 1 and words >= 8")
    rng = np.random.default_rng(0)
    xs = rng.integers(0, np.iinfo(np.int64).max, size=(threads, words), dtype=np.uint64)
    old = numba.get_num_threads()
    if threads > 1:
        numba.set_num_threads(threads)
    try:

        def run(reps: int) -> float:
            t0 = time.perf_counter()
            if threads == 1:
                _peak_loop(xs[0], reps)
            else:
                _peak_parallel(xs, reps)
            return time.perf_counter() - t0

        run(1)  # compile / warm up
        reps = 16
        while True:
            dt = run(reps)
            if dt >= seconds / 4 or reps > 1 << 30:
                break
            reps *= 4
        reps = max(1, int(reps * seconds / max(dt, 1e-9)))
        times = [run(reps) for _ in range(repeats)]
    finally:
        numba.set_num_threads(old)
    ops = float(threads) * reps * words * 64 * _KEYS
    return {
        "bitops_per_s": ops / min(times),
        "bitops_per_s_median": ops / float(np.median(times)),
        "threads": threads,
        "words": words,
        "reps": reps,
        "seconds_best": min(times),
        "cpu": cpu_info().model,
        "numba": numba.__version__,
    }


def _time(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm up (and compile)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts), float(np.median(ts))


def measure_gemm(
    m: int = 1024,
    n: int = 4096,
    k: int = 4096,
    threads: tuple[int, ...] = (1, 2),
    repeats: int = 5,
    reference_repeats: int = 1,
) -> dict[str, Any]:
    """Binary GEMM (m x k bits) x (n x k bits) -> int32: fast kernel vs NumPy reference vs peak.

    Returns per-thread-count results (``best``/``median`` seconds, bit-ops/s, fraction of the
    same-thread-count peak, measured right before each timed call: the best rate over the
    best peak, and the median of the per-round fractions) for ``xnor_gemm`` and
    ``xnor_gemm_threshold``, and the reference (single-threaded NumPy) with the speed-up of
    the fast kernel over it.
    """
    from ..packed import kernels, reference

    rng = np.random.default_rng(0)
    words = (k + 63) // 64
    a = rng.integers(0, np.iinfo(np.int64).max, size=(m, words), dtype=np.uint64)
    b = rng.integers(0, np.iinfo(np.int64).max, size=(n, words), dtype=np.uint64)
    if k % 64:
        mask = np.uint64((1 << (k % 64)) - 1)
        a[:, -1] &= mask
        b[:, -1] &= mask
    thresh = np.zeros(n, dtype=np.int32)
    flip = np.zeros(n, dtype=np.bool_)
    ops = float(m) * n * k
    out: dict[str, Any] = {"m": m, "n": n, "k": k, "bitops": ops, "cpu": cpu_info().model}
    rb, rm = _time(lambda: reference.xnor_gemm(a, b, k), reference_repeats)
    out["reference"] = {"best_s": rb, "median_s": rm, "bitops_per_s": ops / rb}
    for t in threads:
        res: dict[str, Any] = {}
        peaks: list[float] = []
        for name, fn in (
            ("xnor_gemm", lambda t=t: kernels.xnor_gemm(a, b, k, threads=t)),
            (
                "xnor_gemm_threshold",
                lambda t=t: kernels.xnor_gemm_threshold(a, b, k, thresh, flip, threads=t),
            ),
        ):
            fn()  # compile / warm up
            times, fracs, kernel_peaks = [], [], []
            for _ in range(repeats):  # peak and kernel side by side: the load hits both
                peak = peak_xor_popcount(threads=t, seconds=0.1, repeats=1)["bitops_per_s"]
                dt, _ = _time(fn, 1)
                kernel_peaks.append(peak)
                times.append(dt)
                fracs.append(ops / dt / peak)
            peaks += kernel_peaks
            res[name] = {
                "best_s": min(times),
                "median_s": float(np.median(times)),
                "bitops_per_s": ops / min(times),
                # best over best: the largest per-pair ratio came out at 1.24 once, when one
                # peak sample was slowed by load and its kernel sample was not
                "fraction_of_peak": ops / min(times) / max(kernel_peaks),
                "fraction_of_peak_median": float(np.median(fracs)),
                "speedup_vs_reference": rb / min(times),
            }
        res["peak_bitops_per_s"] = max(peaks)
        res["peak_bitops_per_s_median"] = float(np.median(peaks))
        out[f"threads_{t}"] = res
    return out


if __name__ == "__main__":  # pragma: no cover
    import argparse
    import json

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seconds", type=float, default=0.3)
    p.add_argument("--gemm", action="store_true", help="also time the 1024x4096x4096 GEMM")
    args = p.parse_args()
    r = peak_xor_popcount(threads=args.threads, seconds=args.seconds)
    print(json.dumps(r, indent=2))
    if args.gemm:
        print(json.dumps(measure_gemm(), indent=2))
