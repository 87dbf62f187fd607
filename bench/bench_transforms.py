"""Benchmark: the standard (causal) and Laplacian transforms on the MNIST reference network.

Prints the closure + Möbius build time, nnz of Z and M, the standard
transform's throughput for batches of 1, 64 and 1024, and the Laplacian full
and partial (k=256) eigenbases, each beside a dense NumPy/SciPy reference
computed in the same run, then a memory series of the closure on growing
conv nets (peak memory against nnz(Z) and n^2).

    .venv/bin/python bench/bench_transforms.py [--quick]

--quick skips the dense references that take minutes (dense inverse, dense
eigensolvers).
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
import scipy.linalg as la
import torch
from common import ConvStack, mnist_core, timed

import nsp
from nsp.transforms.standard import StandardTransform
from nsp.transforms.laplacian import LaplacianTransform, laplacian


def standard(core, quick: bool) -> None:
    n = core.n_nodes
    t_fit, t = timed(lambda: StandardTransform("explicit").fit(core))
    print(f"standard transform, MNIST network ({n:,} nodes, {core.n_edges:,} edges)")
    print(f"  closure + Möbius build      {t_fit:8.2f} s   nnz(Z) {t.zeta.nnz:,}   nnz(M) {t.mobius.nnz:,}   "
          f"max |M| {t.max_abs_mobius:,}")
    dense_m = None
    if not quick:
        z = t.zeta.toarray().astype(np.float64)
        t_inv, dense_m = timed(lambda: np.linalg.inv(z))
        exact = np.array_equal(np.rint(dense_m), t.mobius.toarray())
        print(f"  dense reference inv(Z)      {t_inv:8.2f} s   ratio {t_inv / t_fit:6.1f} x   (equal: {exact})")
        del z
    rng = np.random.default_rng(0)
    for batch in (1, 64, 1024):
        signals = rng.random((batch, n)).astype(np.float32)
        repeats = 20 if batch == 1 else 3
        t_fwd, coefficients = timed(lambda: t.transform(signals), repeats)
        t_inv, _ = timed(lambda: t.inverse_transform(coefficients), repeats)
        line = (f"  batch {batch:>5}: forward {batch / t_fwd:10,.0f} samples/s   "
                f"inverse {batch / t_inv:10,.0f} samples/s")
        if dense_m is not None:
            s64 = signals.astype(np.float64)
            t_dense, _ = timed(lambda: s64 @ dense_m.T, 1 if batch == 1024 else repeats)
            line += f"   dense M @ s {batch / t_dense:9,.0f} samples/s   ratio {t_dense / t_fwd:6.1f} x"
        print(line)


def laplacian_bench(core, quick: bool) -> None:
    print("Laplacian transform, MNIST network")
    t_full, full = timed(lambda: LaplacianTransform().fit(core))
    t_part, part = timed(lambda: LaplacianTransform(k=256).fit(core))
    tr = part.truncation
    print(f"  channel groups: {full.channel_groups}")
    print(f"  full basis (split by channel symmetry)   {t_full:8.2f} s")
    print(f"  partial basis k=256                       {t_part:8.2f} s   largest kept {tr['largest_kept']:.6f}, "
          f"next {tr['next']:.6f}, cut splits an eigenspace: {tr['splits_eigenspace']}")
    if quick:
        return
    lap = laplacian(core.adjacency).toarray()
    t_ref, (ref_values, ref_vectors) = timed(lambda: np.linalg.eigh(lap))
    print(f"  dense reference numpy.linalg.eigh         {t_ref:8.2f} s   ratio {t_ref / t_full:6.1f} x   "
          f"eigenvalues agree to {np.abs(full.eigenvalues - ref_values).max():.1e}")
    del ref_vectors
    t_sub, sub_values = timed(lambda: la.eigh(lap, subset_by_index=[0, 255], eigvals_only=True,
                                              check_finite=False, driver="evr"))
    print(f"  dense reference scipy eigh, lowest 256    {t_sub:8.2f} s   ratio {t_sub / t_part:6.1f} x   "
          f"eigenvalues agree to {np.abs(part.eigenvalues - sub_values).max():.1e}")
    residual = np.abs(lap @ full.eigenvectors - full.eigenvectors * full.eigenvalues).max()
    orth = np.abs(full.eigenvectors.T @ full.eigenvectors - np.eye(core.n_nodes)).max()
    print(f"  full basis: max |L V - V diag(lambda)| {residual:.1e}, max |V^T V - I| {orth:.1e}")


def memory_series(quick: bool) -> None:
    series = [(2, 8, 3), (4, 12, 3), (4, 16, 4), (8, 16, 4), (8, 24, 4)]
    if quick:
        series = series[:3]
    print("\nMemory: closure + Möbius of 3x3 conv stacks (ops mode: conv and ReLU layers)")
    print(f"  {'ch':>3} {'size':>4} {'depth':>5} {'nodes':>8} {'edges':>10} {'nnz(Z)':>12} {'nnz(M)':>12} "
          f"{'fit s':>7} {'peak MiB':>9} {'B/nnz(Z)':>9} {'n^2 MiB':>9}")
    for channels, size, depth in series:
        torch.manual_seed(0)
        net, x = ConvStack(1, channels, depth), torch.rand(1, 1, size, size)
        core = nsp.NNGraph(nsp.Activations(net, x, trace="ops")).core
        tracemalloc.start()
        start = time.perf_counter()
        t = StandardTransform("explicit").fit(core)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        n = core.n_nodes
        print(f"  {channels:>3} {size:>4} {depth:>5} {n:>8,} {core.n_edges:>10,} {t.zeta.nnz:>12,} "
              f"{t.mobius.nnz:>12,} {seconds:>7.2f} {peak / 2**20:>9.0f} {peak / t.zeta.nnz:>9.1f} "
              f"{8 * n * n / 2**20:>9.0f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="skip the slow dense references")
    args = parser.parse_args()
    core = mnist_core()
    standard(core, args.quick)
    laplacian_bench(core, args.quick)
    memory_series(args.quick)


if __name__ == "__main__":
    main()
