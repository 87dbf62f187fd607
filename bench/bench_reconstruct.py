"""Benchmark: reconstruction of whole activation patterns from a fraction of their neurons.

Three zoo networks trained briefly on scikit-learn's 8x8 digits (Adam, lr 1e-2, 2 epochs, batch 50,
torch.manual_seed(0); the last 8 digits held out): digits_mlp, digits_cnn, and mnist_reference on the
digits upscaled to 28x28. The graph is recorded (ops trace) at the first held-out digit (sem's
max-pool winners are those of that digit). For the fractions 0.05, 0.1, 0.2 and 0.5 of the neurons,
chosen at random (numpy Generator, seed 0), the held-out patterns are reconstructed from their
observed values, and the mean relative error ||rec - s|| / ||s|| and the time per sample are printed
for: sem with omp and standard with omp (sparsity k = 5% of the nodes, at most 200), the Laplacian
low-pass interpolation (k = 64) and the zero pattern (error 1). ReconstructionWarnings are counted.

Reference in the same run: PyGSP (``pip install pygsp==0.6.1``) on digits_mlp, band-limited least
squares on the first 64 eigenvectors of its combinatorial Laplacian of the same undirected graph,
compared with nsp's low-pass reconstruction.

    .venv/bin/python bench/bench_reconstruct.py [--quick] [--omp-samples N] [--blas-threads N]

--quick skips mnist_reference. omp runs on the first --omp-samples held-out digits (default all 8),
and not where the observed rows of W hold more than OMP_LIMIT entries (mnist_reference gets omp at
5% only: at 10% one sample takes ~8 s per method, which would double the run). numpy's BLAS runs on
--blas-threads threads (default 1, threadpoolctl): beside torch's threads on a busy 2-core machine,
two OpenBLAS threads made omp's small least-squares solves 10-30x slower.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from common import timed
from threadpoolctl import threadpool_limits

import nsp
from nsp import zoo
from nsp.transforms.sampling import ReconstructionWarning

FRACTIONS = (0.05, 0.1, 0.2, 0.5)
HELD_OUT = 8
OMP_LIMIT = 6e7           # observed nodes x nodes: the dense rows of W that omp streams once per step


def digits(model: str) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits
    data = load_digits()
    x = torch.tensor(data.images / 16.0, dtype=torch.float32)
    if model == "digits_mlp":
        x = x.reshape(-1, 64)
    else:
        x = x[:, None]
    if model == "mnist_reference":
        x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
    return x, torch.tensor(data.target)


def trained(model: str, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.nn.Module, float]:
    torch.manual_seed(0)
    net = zoo.build(model)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    train_x, train_y = x[:-HELD_OUT], y[:-HELD_OUT]
    for _ in range(2):
        order = torch.randperm(len(train_x))
        for i in range(0, len(order), 50):
            batch = order[i:i + 50]
            optimiser.zero_grad()
            F.cross_entropy(net(train_x[batch]), train_y[batch]).backward()
            optimiser.step()
    net.eval()
    with torch.no_grad():
        accuracy = (net(train_x).argmax(1) == train_y).float().mean().item()
    return net, accuracy


def observed_sets(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [np.sort(rng.choice(n, max(1, round(f * n)), replace=False)) for f in FRACTIONS]


def reconstruct(t, s, observed, k, method):
    """(mean relative error, seconds per sample, warnings) of one reconstruction of the batch ``s``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ReconstructionWarning)
        start = time.perf_counter()
        rec = t.reconstruct(s[:, observed], observed, sparsity=k, method=method)
        seconds = (time.perf_counter() - start) / len(s)
    error = np.linalg.norm(rec - s, axis=1) / np.linalg.norm(s, axis=1)
    return float(error.mean()), seconds, sum(issubclass(w.category, ReconstructionWarning) for w in caught)


def bench_model(model: str, omp_samples: int):
    x, y = digits(model)
    net, accuracy = trained(model, x, y)
    held = x[-HELD_OUT:]
    core = nsp.GraphCore.from_activations(nsp.Activations(net, held[:1], trace="ops"))
    with torch.no_grad():
        s = nsp.record(net, held, "ops").values(np.float64)
    n = core.n_nodes
    k = min(200, max(1, round(0.05 * n)))
    start = time.perf_counter()
    lap = nsp.LaplacianTransform(k=64).fit(core)
    t_lap = time.perf_counter() - start
    standard = nsp.StandardTransform().fit(core)
    methods = {"sem omp": (nsp.SemTransform().fit(core), k, "omp"),
               f"standard omp{' factored' if standard.factored else ''}": (standard, k, "omp"),
               "laplacian lowpass": (lap, 64, "lowpass")}
    cut = lap.truncation
    print(f"\n{model}: {n:,} nodes (ops trace), training accuracy {accuracy:.0%}, omp sparsity k = {k}; "
          f"Laplacian fit {t_lap:.1f} s, eigenvalue {cut['largest_kept']:.4f} at the cut, next {cut['next']:.4f}"
          f"{' (the cut splits an eigenspace)' if cut['splits_eigenspace'] else ''}")
    if omp_samples < HELD_OUT:
        print(f"  omp on the first {omp_samples} of the {HELD_OUT} held-out digits; low-pass and zero on all")
    print(f"  {'fraction':>8} {'observed':>8}   " + "".join(f"{name:>22}" for name in methods) + f"{'zero':>7}")
    counts, skipped = dict.fromkeys(methods, 0), False
    for fraction, observed in zip(FRACTIONS, observed_sets(n)):
        cells = []
        for name, (t, width, method) in methods.items():
            batch = s[:omp_samples] if method == "omp" else s
            if method == "omp" and observed.size * n > OMP_LIMIT:
                cells.append(f"{'skipped (too slow)':>22}")
                skipped = True
                continue
            error, seconds, warned = reconstruct(t, batch, observed, width, method)
            counts[name] += warned
            cells.append(f"{error:>10.3f} {seconds * 1e3:>8.1f} ms")
        print(f"  {fraction:>8.2f} {observed.size:>8,}   " + "".join(cells) + f"{1.0:>7.3f}")
    print("  (each cell: mean relative error, time per sample)   ReconstructionWarnings: "
          + ", ".join(f"{name} {count}" for name, count in counts.items()))
    if skipped:
        print(f"  skipped: omp where observed x nodes > {OMP_LIMIT:.0e} (each of its k steps refits by least squares "
              f"on dense observed rows of W; at 10% here one sample takes ~8 s per method)")
    return core, s


def pygsp_reference(core, s) -> None:
    try:
        import pygsp
    except ImportError:
        print("\npygsp is not installed: PyGSP reference skipped (pip install pygsp==0.6.1)")
        return
    a = core.adjacency
    w = sp.csr_matrix(((a + a.T) != 0).astype(np.float64))
    w.setdiag(0)
    w.eliminate_zeros()
    graph = pygsp.graphs.Graph(w)
    t_basis, _ = timed(graph.compute_fourier_basis)
    e = graph.e
    gaps = np.flatnonzero(np.diff(e[:65]) > 1e-9 * max(1.0, e[-1])) + 1     # cuts that split no eigenspace
    below = int(gaps[-1])
    print(f"\nPyGSP {pygsp.__version__} reference on digits_mlp ({core.n_nodes} nodes; full Fourier basis in "
          f"{t_basis * 1e3:.1f} ms); its eigenvalues 62..64 (0-based) {', '.join(f'{v:.4f}' for v in e[62:65])}")
    if below != 64:
        last = np.flatnonzero(e > e[63] + 1e-9 * e[-1])[0] - 1
        print(f"  the cut at 64 splits the eigenspace of {e[63]:.4f} (eigenvalues {below}..{last}, 0-based): "
              f"which of its vectors the band holds is arbitrary, so nsp and PyGSP may differ there; "
              f"compared also at k = {below}, the largest cut below 64 that splits no eigenspace")
    scale = np.abs(s).max()
    for k in (64, below) if below != 64 else (64,):
        lap = nsp.LaplacianTransform(k=k).fit(core)
        print(f"  k = {k}: max |eigenvalue difference| {np.abs(e[:k] - lap.eigenvalues).max():.1e}")
        for fraction, observed in zip(FRACTIONS, observed_sets(core.n_nodes)):
            start = time.perf_counter()
            coefficients = np.linalg.lstsq(graph.U[observed, :k], s[:, observed].T, rcond=None)[0]
            ref = (graph.U[:, :k] @ coefficients).T
            seconds = (time.perf_counter() - start) / len(s)
            error = np.mean(np.linalg.norm(ref - s, axis=1) / np.linalg.norm(s, axis=1))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ReconstructionWarning)
                rec = lap.reconstruct(s[:, observed], observed, sparsity=k, method="lowpass")
            print(f"    fraction {fraction:.2f}: PyGSP low-pass error {error:7.3f} ({seconds * 1e3:.2f} ms/sample), "
                  f"nsp {np.mean(np.linalg.norm(rec - s, axis=1) / np.linalg.norm(s, axis=1)):7.3f};  "
                  f"max |PyGSP - nsp| / max |s| {np.abs(ref - rec).max() / scale:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip mnist_reference")
    parser.add_argument("--blas-threads", type=int, default=1, help="threads of numpy's BLAS")
    parser.add_argument("--omp-samples", type=int, default=HELD_OUT, help="held-out digits omp runs on")
    args = parser.parse_args()
    torch.set_num_threads(2)
    threadpool_limits(args.blas_threads, user_api="blas")
    print(f"{torch.get_num_threads()} torch threads, {args.blas_threads} BLAS; fractions of the neurons observed "
          f"{FRACTIONS}, {HELD_OUT} held-out digits")
    reference = bench_model("digits_mlp", args.omp_samples)
    bench_model("digits_cnn", args.omp_samples)
    if not args.quick:
        bench_model("mnist_reference", args.omp_samples)
    pygsp_reference(*reference)


if __name__ == "__main__":
    main()
