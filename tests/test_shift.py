"""The causal shift and convolution: on a lattice the shift is the meet, the convolution is a sum of shifts
and is diagonal in the spectrum."""

import itertools
from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse as sp

import nsp
from nsp.errors import InputError

# the lattice of subsets of {a, b} plus a top: 0 = {}, 1 = {a}, 2 = {b}, 3 = {a, b}, 4 = top (row = target)
EDGES = [(1, 0), (2, 0), (3, 1), (3, 2), (4, 3)]
ADJ = sp.csr_matrix((np.ones(len(EDGES)), tuple(zip(*EDGES))), shape=(5, 5))
BELOW = [{0}, {0, 1}, {0, 2}, {0, 1, 2, 3}, {0, 1, 2, 3, 4}]          # the down-set of each node


def meet(x: int, q: int) -> int:
    common = BELOW[x] & BELOW[q]
    return next(m for m in common if BELOW[m] == common)


def test_the_shift_on_a_lattice_is_the_meet_exactly():
    t = nsp.StandardTransform("explicit").fit(ADJ)
    s = np.array([[3.0, -1.0, 4.0, 10.0, 2.5], [0.0, 7.0, -2.0, 1.0, 9.0]])
    for q in range(5):
        expected = [[s[b, meet(x, q)] for x in range(5)] for b in range(2)]
        assert t.shift(s, q).tolist() == expected


def test_convolution_is_the_sum_of_shifts_and_diagonal_in_the_spectrum():
    t = nsp.StandardTransform("explicit").fit(ADJ)
    s = np.array([3.0, -1.0, 4.0, 10.0, 2.5])
    taps = np.array([0.5, 0.0, -2.0, 1.0, 0.25])
    by_shifts = sum(taps[q] * t.shift(s, q) for q in range(5))
    assert np.allclose(t.convolve(s, taps), by_shifts, rtol=0, atol=1e-12)
    # the response of y sums the taps of the nodes above it: exact fractions
    response = [sum(Fraction(taps[q]) for q in range(5) if y in BELOW[q]) for y in range(5)]
    assert t.frequency_response(taps).tolist() == [float(v) for v in response]
    assert np.allclose(t.transform(t.convolve(s, taps)), t.transform(s) * np.array(response, float), rtol=0,
                       atol=1e-12)
    # shifts commute and compose to the shift by the meet
    for p, q in itertools.product(range(5), repeat=2):
        assert t.shift(t.shift(s, p), q).tolist() == t.shift(s, meet(p, q)).tolist()


def test_weighted_shifts_share_the_basis_of_w():
    rng = np.random.default_rng(0)
    a = sp.csr_matrix(np.tril(rng.standard_normal((6, 6)), -1) * (rng.random((6, 6)) < 0.6))
    for t in (nsp.SemTransform().fit(a), nsp.InfluenceTransform().fit(a)):
        w = np.tril(np.linalg.inv(np.eye(6) - a.toarray())) if t.type == "sem" else t.closure.toarray()
        s = rng.standard_normal(6)
        for q in range(6):
            reach = np.abs(w[q]) > 1e-12               # the dense inverse leaves rounding where no path is
            expected = w @ np.diag(reach.astype(float)) @ np.linalg.solve(w, s)
            assert np.allclose(t.shift(s, q), expected, rtol=0, atol=1e-10)


def test_shift_arguments_are_checked():
    t = nsp.StandardTransform("explicit").fit(ADJ)
    with pytest.raises(InputError, match=r"shift: node must be one node index; got \[1, 2\]"):
        t.shift(np.ones(5), [1, 2])
    with pytest.raises(InputError, match=r"targets: node 5 outside 0\.\.4"):
        t.shift(np.ones(5), 5)
    with pytest.raises(InputError, match=r"taps must have shape \(samples, 5\) or \(5,\); got \(3,\)"):
        t.convolve(np.ones(5), np.ones(3))
    lap = nsp.LaplacianTransform(k=2).fit(ADJ)
    with pytest.raises(InputError, match=r"the causal shift needs coefficients at the nodes; the laplacian "
                                         r"transform's are not"):
        lap.shift(np.ones(5), 0)


def test_worked_examples_of_the_docs():
    t = nsp.StandardTransform("explicit").fit(ADJ)
    s = np.array([3.0, -1.0, 4.0, 10.0, 2.5])
    taps = np.array([0.5, 0.0, -2.0, 1.0, 0.25])
    assert t.transform(s).tolist() == [3.0, -4.0, 1.0, 10.0, -7.5]
    assert t.shift(s, 1).tolist() == [3.0, -1.0, 3.0, -1.0, -1.0]
    assert t.frequency_response(taps).tolist() == [-0.25, 1.25, -0.75, 1.25, 0.25]
    assert t.convolve(s, taps).tolist() == [-0.75, -5.75, -1.5, 6.0, 4.125]
    diamond = nsp.StandardTransform("explicit").fit(sp.csr_matrix(np.array([[0, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0],
                                                                            [1, 1, 1, 0]])))
    assert diamond.contributions([3.0, -1.0, 4.0, 10.0], [3, 1]).tolist() == [[3, -4, 1, 10], [3, -4, 0, 0]]
    weighted = sp.csr_matrix(np.array([[0, 0, 0, 0], [2.0, 0, 0, 0], [-4.0, 0, 0, 0], [0, 1.0, -1.0, 0]]))
    assert nsp.SemTransform().fit(weighted).synthesis_rows(3).tolist() == [[6.0, 1.0, -1.0, 1.0]]
