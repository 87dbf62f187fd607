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

    .venv/bin/python bench/bench_reconstruct.py [--quick] [--omp-samples N]

--quick skips mnist_reference. On mnist_reference omp runs on the first --omp-samples held-out
digits (default 2) and not where the observed rows of W hold more than OMP_LIMIT entries (one sample
then takes over a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from common import timed  # noqa: F401  (the benchmarks' shared set-up; timings here are single runs)

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
    return float(error.mean()), seconds, sum(issubclass(w.category, ReconstructionWarning) for w in caught), rec


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
               f"standard omp{' (f)' if standard.factored else ''}": (standard, k, "omp"),
               "laplacian lowpass": (lap, 64, "lowpass")}
    cut = lap.truncation
    print(f"\n{model}: {n:,} nodes (ops trace), training accuracy {accuracy:.0%}, omp sparsity k = {k}; "
          f"Laplacian fit {t_lap:.1f} s, eigenvalue {cut['largest_kept']:.4f} at the cut, next {cut['next']:.4f}"
          f"{' (the cut splits an eigenspace)' if cut['splits_eigenspace'] else ''}")
    few = omp_samples < HELD_OUT and n > 5000
    if few:
        print(f"  omp on the first {omp_samples} of the {HELD_OUT} held-out digits (OMP_LIMIT {OMP_LIMIT:.0e}); "
              f"low-pass and zero on all {HELD_OUT}")
    print(f"  {'fraction':>8} {'observed':>8}   " + "".join(f"{name:>22}" for name in methods) + f"{'zero':>7}")
    counts = dict.fromkeys(methods, 0)
    recs = []
    for fraction, observed in zip(FRACTIONS, observed_sets(n)):
        cells = []
        for name, (t, width, method) in methods.items():
            batch = s[:omp_samples] if method == "omp" and few else s
            if method == "omp" and observed.size * n > OMP_LIMIT:
                cells.append(f"{'skipped (too slow)':>22}")
                continue
            error, seconds, warned, rec = reconstruct(t, batch, observed, width, method)
            counts[name] += warned
            cells.append(f"{error:>10.3f} {seconds * 1e3:>8.1f} ms")
            if method == "lowpass":
                recs.append(rec)
        print(f"  {fraction:>8.2f} {observed.size:>8,}   " + "".join(cells) + f"{1.0:>7.3f}")
    print("  (each cell: mean relative error, time per sample)   ReconstructionWarnings: "
          + ", ".join(f"{name} {count}" for name, count in counts.items()))
    return core, s, lap, recs


def pygsp_reference(core, s, lap, recs) -> None:
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
    basis, e = graph.U[:, :64], graph.e
    degenerate = abs(e[64] - e[63]) <= 1e-9 * max(1.0, e[-1]) if e.size > 64 else False
    print(f"\nPyGSP {pygsp.__version__} reference on digits_mlp ({core.n_nodes} nodes, full Fourier basis in "
          f"{t_basis * 1e3:.1f} ms): max |eigenvalue difference| over the first 64 "
          f"{np.abs(e[:64] - lap.eigenvalues).max():.1e}; eigenvalues 63, 64, 65 (0-based 62..64): "
          f"{', '.join(f'{v:.4f}' for v in e[62:65])}{' - the cut splits an eigenspace' if degenerate else ''}")
    scale = np.abs(s).max()
    for fraction, observed, rec in zip(FRACTIONS, observed_sets(core.n_nodes), recs):
        start = time.perf_counter()
        coefficients = np.linalg.lstsq(basis[observed], s[:, observed].T, rcond=None)[0]
        ref = (basis @ coefficients).T
        seconds = (time.perf_counter() - start) / len(s)
        error = np.mean(np.linalg.norm(ref - s, axis=1) / np.linalg.norm(s, axis=1))
        print(f"  fraction {fraction:.2f}: PyGSP low-pass error {error:.3f} ({seconds * 1e3:.2f} ms/sample);  "
              f"max |PyGSP - nsp| / max |s| {np.abs(ref - rec).max() / scale:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip mnist_reference")
    parser.add_argument("--omp-samples", type=int, default=2, help="held-out digits omp runs on for mnist_reference")
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"{torch.get_num_threads()} threads; fractions of the neurons observed {FRACTIONS}, {HELD_OUT} held-out "
          f"digits")
    reference = bench_model("digits_mlp", args.omp_samples)
    bench_model("digits_cnn", args.omp_samples)
    if not args.quick:
        bench_model("mnist_reference", args.omp_samples)
    pygsp_reference(*reference)


if __name__ == "__main__":
    main()
