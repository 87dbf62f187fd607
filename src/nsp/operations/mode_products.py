"""Kronecker terms applied to numbers: mode products on NumPy or a torch device, exactly where asked.

``apply_term`` multiplies a batch of tensors by ``kron(term)`` one axis at a time (an all-ones factor is a
sum over its axis, an identity nothing, a dense factor a matrix product on its axis), so the matrix itself
is never formed. With :class:`Moduli` the values are integer residues and the products stay exact
(reduced modulo one prime per sample wherever a sum could leave the exact range of float64).
"""

from __future__ import annotations

from math import prod

import numpy as np

from nsp.operations.kronecker import Factor


class Backend:
    """The few array operations the transforms need, on NumPy or on a torch device."""

    def __init__(self, device=None):
        self.torch = device is not None
        if self.torch:
            import torch                     # only where a device is asked for
            self._t = torch
        self.device = torch.device(device) if self.torch else None
        self._matrices: dict = {}

    def asarray(self, values: np.ndarray):
        return self._t.from_numpy(values).to(self.device) if self.torch else values

    def tonumpy(self, values) -> np.ndarray:
        return values.cpu().numpy() if self.torch else values

    def empty(self, shape):
        return self._t.empty(shape, dtype=self._t.float64, device=self.device) if self.torch else np.empty(shape)

    def matrix(self, factor: Factor):
        """The float64 matrix of a dense factor, converted once."""
        key = factor.key
        if key not in self._matrices:
            self._matrices[key] = self.asarray(factor.array.astype(np.float64))
        return self._matrices[key]

    def permute(self, x, order: tuple):
        """The axes of ``x`` in the given order (a view)."""
        return x.permute(order) if self.torch else x.transpose(order)

    def moveaxis(self, x, source: int, target: int):
        return self._t.movedim(x, source, target) if self.torch else np.moveaxis(x, source, target)


#: elements reduced at once on NumPy (the temporary stays in cache)
_REDUCE_BLOCK = 1 << 16


def reduce_(x, modulus, inverse):
    """In place, ``x`` (integer-valued float64, ``|x| <= 2^53 - modulus``) replaced by a congruent value of
    magnitude below ``modulus``, exactly. NumPy: ``x - round(x / modulus) * modulus``, at most
    ``modulus / 2 + 4`` in magnitude (the quotient is an integer and every product and difference an
    exact float64 integer); torch: ``remainder`` (IEEE ``fmod``, exact), in ``[0, modulus)``.
    ``modulus`` and its ``inverse`` (``1 / modulus``): numbers, or arrays of one value per leading index
    of ``x`` shaped to broadcast against it. Returns ``x``."""
    if not isinstance(x, np.ndarray):
        return x.remainder_(modulus)
    step = max(1, _REDUCE_BLOCK // max(1, x[0].size)) if x.ndim > 1 else x.size
    for a in range(0, x.shape[0] if x.ndim > 1 else 1, step):
        part = x[a:a + step] if x.ndim > 1 else x
        p, inv = ((modulus[a:a + step], inverse[a:a + step]) if np.ndim(modulus) else (modulus, inverse))
        q = part * inv
        np.rint(q, out=q)
        q *= p
        part -= q
    return x


class Moduli:
    """One prime below 2^26 per sample, for exact residue arithmetic in float64 (exact standard transform).

    Residues are kept below ``p`` in magnitude (:func:`reduce_`); a sum of at most ``limit`` such values
    is an exact float64 integer that may still be reduced.
    """

    def __init__(self, backend: "Backend", moduli: np.ndarray, rank: int):
        moduli = np.asarray(moduli, dtype=np.float64)
        shape = (-1,) + (1,) * rank
        self.p = backend.asarray(np.ascontiguousarray(moduli.reshape(shape)))
        self.inverse = backend.asarray(np.ascontiguousarray((1.0 / moduli).reshape(shape)))
        self.largest = int(moduli.max())
        self.limit = (1 << 53) // self.largest - 1

    def reduce_(self, x):
        return reduce_(x, self.p, self.inverse)


def apply_term(backend: Backend, x, term: tuple, reduced: dict, moduli: Moduli | None = None):
    """``kron(term) x`` on a batch ``x`` of shape (B, *axes), all-ones axes left at size 1.

    ``reduced`` caches the sums of ``x`` over sets of axes (shared by the terms of one source layer).
    With ``moduli``, ``x`` holds residues (magnitude below the sample's prime); the result is an exact
    integer sum of at most ``fan_in(term)`` of them, reduced on the way only where that many could pass
    the exact range of float64.
    """
    sums = tuple(a + 1 for a, f in enumerate(term) if f.kind == "ones" and f.shape[1] > 1)
    if sums not in reduced:                 # shared by terms of any fan-in: reduced whenever residues
        y = x.sum(axis=sums, keepdims=True) if sums else x
        reduced[sums] = moduli.reduce_(y) if sums and moduli is not None else y
    moduli = moduli if moduli is not None and fan_in(term) > moduli.limit else None
    y = reduced[sums]
    for a, f in enumerate(term):
        if f.kind != "dense":
            continue
        if a == len(term) - 1:
            y = y @ backend.matrix(f).T
        else:
            y = backend.moveaxis(backend.moveaxis(y, a + 1, -1) @ backend.matrix(f).T, -1, a + 1)
        if moduli is not None:
            y = moduli.reduce_(y)
    return y


def fan_in(term: tuple) -> int:
    """Most entries in a row of ``kron(term)``: how many inputs one output sums."""
    return prod(f.row_max for f in term)
