"""Sparse reconstruction from sampled neurons: exact where theory says greedy pursuit must succeed, and a
warning (never a silent answer) where the observed rows do not determine the pattern."""

import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn as nn

import nsp
from nsp.errors import InputError
from nsp.graph.weights import weighted_adjacency
from nsp.transforms.sampling import ReconstructionWarning


@pytest.fixture(scope="module")
def mlp():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4)).eval()
    core = nsp.GraphCore.from_activations(nsp.Activations(net, torch.randn(1, 8)))
    w = np.linalg.inv(np.eye(core.n_nodes) - weighted_adjacency(core).toarray())   # dense W, in the test
    return core, nsp.SemTransform().fit(core), w


def erc(phi: np.ndarray, support: np.ndarray) -> bool:
    """Tropp's exact recovery condition: orthogonal matching pursuit recovers every signal on ``support``."""
    sub = phi[:, support]
    if np.linalg.matrix_rank(sub) < support.size:
        return False
    normed = phi / np.where(np.linalg.norm(phi, axis=0) > 0, np.linalg.norm(phi, axis=0), np.inf)
    others = np.setdiff1d(np.arange(phi.shape[1]), support)
    return np.abs(np.linalg.pinv(normed[:, support]) @ normed[:, others]).sum(axis=0).max() < 1 - 1e-9


@pytest.mark.parametrize("method", ["omp", "lasso"])
def test_sparse_patterns_are_recovered_exactly_where_the_recovery_condition_holds(mlp, method):
    core, sem, w = mlp
    rng = np.random.default_rng(3)
    recovered = 0
    for trial in range(60):
        k = 1 + trial % 3
        observed = np.sort(rng.choice(core.n_nodes, int(0.7 * core.n_nodes), replace=False))
        support = np.sort(rng.choice(core.n_nodes, k, replace=False))
        if not erc(w[observed], support):
            continue
        c = np.zeros(core.n_nodes)
        c[support] = rng.choice([-1, 1], k) * rng.uniform(0.5, 2.0, k)
        s = w @ c
        with warnings.catch_warnings():             # unobserved outputs are invisible; no other warning comes
            warnings.simplefilter("ignore", ReconstructionWarning)
            warnings.filterwarnings("error", r"\d+ of \d+ samples", ReconstructionWarning)
            pattern, coefficients = sem.reconstruct(s[observed], observed, k, method=method, return_coefficients=True)
        assert np.allclose(coefficients, c, rtol=0, atol=1e-9)
        assert np.allclose(pattern, s, rtol=0, atol=1e-9 * (1 + np.abs(s).max()))
        recovered += 1
    assert recovered >= 10            # the condition held often enough for the test to mean something


def test_batches_full_rows_and_one_row_give_the_same_answer(mlp):
    core, sem, w = mlp
    observed = np.zeros(core.n_nodes, bool)
    observed[::2] = True
    c = np.zeros((2, core.n_nodes))
    c[0, 3], c[1, 40] = 1.5, -2.0
    s = c @ w.T
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReconstructionWarning)
        both = sem.reconstruct(s, observed, 1)                  # full rows: the observed columns are read
        one = sem.reconstruct(s[1, observed], np.flatnonzero(observed), 1)
    assert np.array_equal(both[1], one)


def test_undetermined_observations_are_reported():
    # 0 -> 1 with weight 1, 1 -> 2 with weight 2; only node 1 is observed: the columns of 0 and 1 are equal
    # there, and node 2 has no observed descendant
    sem = nsp.SemTransform().fit(sp.csr_matrix(np.array([[0, 0, 0], [1.0, 0, 0], [0, 2.0, 0]])))
    s = sem.inverse_transform(np.array([0.0, 3.0, 0.0]))
    with pytest.warns(ReconstructionWarning) as caught:
        sem.reconstruct([s[1]], [1], 1)
    messages = [str(w.message) for w in caught]
    assert "1 of 3 coefficients have no observed node that depends on them: the observations say nothing about " \
           "them (reconstructed as 0)" in messages
    assert any(m.startswith("1 of 1 samples fit other patterns as sparse as the one returned") for m in messages)
    # a pattern with three causes has no one-sparse fit on two observed nodes of a diamond
    lap = nsp.SemTransform().fit(sp.csr_matrix(np.array([[0, 0, 0], [1.0, 0, 0], [1.0, 0, 0]])))
    with pytest.warns(ReconstructionWarning, match=r"1 of 1 samples have no 1-sparse fit to the observations "
                                                   r"\(relative residual up to 0\.\d+\)"):
        lap.reconstruct(np.array([[2.0, 5.0]]), [1, 2], 1)


def test_band_limited_patterns_are_interpolated_exactly_by_the_laplacian():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    core = nsp.GraphCore.from_activations(nsp.Activations(net, torch.randn(1, 6)))
    lap = nsp.LaplacianTransform().fit(core)
    values = lap.eigenvalues
    band = next(i for i in range(2, len(values)) if values[i] - values[i - 1] > 1e-6)   # ends at a gap
    rng = np.random.default_rng(0)
    c = np.zeros((2, core.n_nodes))
    c[:, :band] = rng.standard_normal((2, band))               # the lowest frequencies only
    s = lap.inverse_transform(c)
    observed = np.sort(rng.choice(core.n_nodes, 12, replace=False))
    assert np.linalg.matrix_rank(lap.eigenvectors[observed, :band]) == band
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReconstructionWarning)
        pattern = lap.reconstruct(s[:, observed], observed, band, method="lowpass")
    assert np.allclose(pattern, s, rtol=0, atol=1e-10)
    lonely = np.array([0])                                      # one node cannot pin down the band
    with pytest.warns(ReconstructionWarning) as caught:
        lap.reconstruct(s[:, lonely], lonely, band, method="lowpass")
    messages = [str(w.message) for w in caught]
    assert any(re.match(rf"the observed nodes hardly determine the first {band} coefficients \(condition number "
                        r"(inf|\d\.\d+e\+\d+)\)", m) for m in messages), messages
    # a band that ends inside an eigenspace holds an arbitrary part of it: said
    split = next(i for i in range(1, len(values) - 1) if abs(values[i] - values[i - 1]) <= 1e-9 * max(1, values[i]))
    with pytest.warns(ReconstructionWarning, match=rf"the band of the first {split} coefficients ends inside the "
                                                   rf"eigenspace of eigenvalue {values[split - 1]:.6g}, which "
                                                   rf"continues past it"):
        lap.reconstruct(s[:, observed], observed, split, method="lowpass")


def test_arguments_are_checked(mlp):
    core, sem, _ = mlp
    n = core.n_nodes
    s = np.ones((1, n))
    cases = [
        (dict(observed=[], sparsity=1), "observed: no node is observed"),
        (dict(observed=[0, n], sparsity=1), rf"observed: node {n} outside 0\.\.{n - 1}"),
        (dict(observed=[1, 1], sparsity=1), "observed: a node is listed twice"),
        (dict(observed=np.ones(3, bool), sparsity=1), rf"observed: a boolean mask must have shape \({n},\)"),
        (dict(observed=[0.5], sparsity=1), "observed must be a boolean mask over the"),
        (dict(observed=[0, 1], sparsity=0), rf"sparsity=0: the number of non-zero coefficients is an integer in "
                                            rf"1\.\.{n}"),
        (dict(observed=[0, 1], sparsity=2.0), r"sparsity=2\.0"),
        (dict(observed=[0, 1], sparsity=1, method="cosamp"), "unknown method 'cosamp' for reconstruct; accepted: "
                                                             "omp, lasso, lowpass"),
        (dict(observed=[0, 1], sparsity=1, alpha=0.1), r"alpha=0\.1: the l1 penalty is a positive number, for "
                                                       r"method='lasso' only"),
        (dict(observed=[0, 1], sparsity=1, method="lasso", alpha=-1.0), r"alpha=-1\.0"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InputError, match=message):
            sem.reconstruct(s, **kwargs)
    with pytest.raises(InputError, match=rf"values must have shape \(samples, 2\) \(the observed nodes' values\) or "
                                         rf"\(samples, {n}\); got \(1, 3\)"):
        sem.reconstruct(np.ones((1, 3)), [0, 1], 1)
    with pytest.raises(InputError, match="values hold NaN or infinite entries"):
        sem.reconstruct(np.array([np.nan, 1.0]), [0, 1], 1)
