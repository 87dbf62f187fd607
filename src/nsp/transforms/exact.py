"""Exact integer arithmetic for the causal transform, by residues modulo many primes.

A float signal is an integer vector times a power of two: each sample ``s``
is written exactly as ``s = X * 2^E`` with one exponent ``E`` per sample and
integers ``X`` (:func:`to_integers`). The causal transform maps integers to
integers (the zeta matrix is 0/1 and the Möbius matrix integral), so the
spectrum is ``C * 2^E`` with ``C`` exact integers of possibly hundreds of
bits. They are computed modulo primes ``p < 2^26`` in float64 arithmetic,
where every intermediate sum stays an exact integer below ``2^53``
(:func:`residues`, and the modular mode products in
:mod:`nsp.transforms.factored`); enough primes are taken for a proven bound
on ``|C|`` (:func:`primes_for`), and ``C`` is rebuilt from its residues by
Garner's mixed-radix algorithm and rounded once, correctly (nearest, ties
to even), to float64 (:func:`reconstruct`). Everything is vectorised with
NumPy; no step depends on the order of additions, so any backend gives the
same bits.
"""

from __future__ import annotations

from math import log2

import numpy as np

#: moduli: the largest primes below 2^26, descending
PRIME_BITS = 26
_LIMB = 30                                  # bits per limb of the binary reconstruction (int64 limbs)
_MASK = (1 << _LIMB) - 1


def _primes(count: int) -> list[int]:
    out, candidate = [], (1 << PRIME_BITS) - 1
    while len(out) < count:
        if all(candidate % d for d in range(3, int(candidate ** 0.5) + 1, 2)):
            out.append(candidate)
        candidate -= 2
    return out


PRIMES = _primes(96)                        # 96 x 26 bits: coefficients up to ~2,490 bits
#: an exact sum of values below p stays below 2^53 for at most this many terms
MAX_TERMS = (1 << 53) // PRIMES[0]


class ExactnessError(ValueError):
    """Input the exact transform cannot take (NaN or infinity), or a sum too long for exact float64."""


def to_integers(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x`` (samples, n) float as ``mantissa * 2^shift * 2^E[sample]`` exactly.

    Returns ``(mantissa, shift, E)``: int64 mantissas with ``|m| < 2^53``, int64 shifts ``>= 0`` and one
    int64 exponent per sample (zeros have mantissa 0). The integer signal is ``X = mantissa << shift``.
    """
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ExactnessError(f"the exact transform needs finite values; entry {tuple(int(i) for i in bad)} is "
                             f"{x[tuple(bad)]}")
    fraction, exponent = np.frexp(x)
    mantissa = np.ldexp(fraction, 53).astype(np.int64)          # exact: |fraction| < 1 has <= 53 bits
    exponent = exponent.astype(np.int64) - 53
    zeros = np.frexp((mantissa & -mantissa).astype(np.float64))[1].astype(np.int64) - 1   # trailing zero bits
    zeros = np.maximum(zeros, 0)
    mantissa >>= zeros                      # odd mantissas: as few bits as the value needs (24 for float32 data)
    exponent += zeros
    nonzero = mantissa != 0
    big = np.iinfo(np.int64).max
    low = np.where(nonzero, exponent, big).min(axis=1, keepdims=True)
    low = np.where(low == big, 0, low)
    shift = np.where(nonzero, exponent - low, 0)
    return mantissa, shift, low[:, 0]


def signal_bits(mantissa: np.ndarray, shift: np.ndarray) -> int:
    """The largest bit length of an ``|X|`` of the batch."""
    lengths = np.frexp(np.abs(mantissa).astype(np.float64))[1]       # exact below 2^53
    return int((shift + lengths).max(initial=0)) if mantissa.size else 0


def residues(mantissa: np.ndarray, shift: np.ndarray, p: int) -> np.ndarray:
    """``X mod p`` as float64 in ``[0, p)`` (int64 arithmetic: every product below 2^52)."""
    table = np.array([pow(2, int(k), p) for k in range(int(shift.max(initial=0)) + 1)], dtype=np.int64)
    small = mantissa.size == 0 or int(np.abs(mantissa).max()) < p          # float32 data: 24-bit mantissas
    reduced = np.where(mantissa < 0, mantissa + p, mantissa) if small else mantissa % p
    reduced *= np.take(table, shift)
    reduced %= p
    return reduced.astype(np.float64)


def primes_for(bits: float) -> int:
    """How many primes make their product exceed ``2^(bits + 1)`` (a signed value of ``bits`` bits)."""
    total = 0.0
    for count, p in enumerate(PRIMES, start=1):
        total += log2(p)
        if total > bits + 2:
            return count
    raise ExactnessError(f"coefficients of up to {bits:.0f} bits exceed the {len(PRIMES)} primes of the exact "
                         f"transform ({total:.0f} bits)")


def reconstruct(rows: list[np.ndarray], exponent: np.ndarray) -> np.ndarray:
    """Correctly rounded float64 of ``C * 2^E`` from the residues ``rows[i] = C mod PRIMES[i]``.

    ``rows``: float64 arrays of shape (samples, m), ``C`` assumed in ``(-P/2, P/2)`` with ``P`` the product
    of the primes used; ``exponent``: ``E`` per sample.
    """
    k = len(rows)
    primes = PRIMES[:k]
    exponents = np.broadcast_to(exponent[:, None], rows[0].shape)
    digits = _garner([r.astype(np.int64) for r in rows], primes)
    negative = _above_half(digits, primes)
    magnitude = _negate_where(digits, primes, negative)
    # below 2^52 (two digits) the integer is a float64 already, and ldexp rounds it once, correctly
    value = magnitude[0].astype(np.float64)
    if k > 1:
        value += magnitude[1].astype(np.float64) * primes[0]
    value = np.ldexp(value, exponents)
    large = np.zeros(value.shape, dtype=bool)
    for v in magnitude[2:]:
        large |= v != 0
    if large.any():
        limbs = _to_limbs([v[large] for v in magnitude], primes)
        with np.errstate(over="ignore"):
            value[large] = _round(limbs, exponents[large])
    return np.where(negative, -value, value)


def _garner(residue: list, primes: list) -> list:
    """Mixed-radix digits ``v`` with ``C = v0 + v1 p0 + v2 p0 p1 + ...`` (each ``0 <= v_i < p_i``).

    ``v_i = (r_i - sum_{j<i} v_j (p_0 ... p_{j-1} mod p_i)) / (p_0 ... p_{i-1}) mod p_i``: the sum has at most
    95 terms below 2^52 each, so it stays below 2^63 and needs one reduction.
    """
    digits = [residue[0]]
    for i in range(1, len(primes)):
        p = primes[i]
        weights, product = [], 1
        for q in primes[:i]:
            weights.append(product)
            product = product * q % p
        inverse = pow(product, -1, p)
        u = digits[0] * weights[0]
        for v, w in zip(digits[1:], weights[1:]):
            u = u + v * w
        digits.append((residue[i] - u % p) % p * inverse % p)
    return digits


def _above_half(digits: list, primes: list) -> np.ndarray:
    """Whether the mixed-radix number exceeds ``(P - 1) / 2`` (then it stands for ``C - P < 0``)."""
    half, product = [], 1
    for p in primes:
        product *= p
    rest = (product - 1) // 2
    for p in primes:
        half.append(rest % p)
        rest //= p
    greater = np.zeros(digits[0].shape, dtype=bool)
    decided = np.zeros(digits[0].shape, dtype=bool)
    for v, h in zip(reversed(digits), reversed(half)):
        greater |= ~decided & (v > h)
        decided |= v != h
    return greater


def _negate_where(digits: list, primes: list, negative: np.ndarray) -> list:
    """Digits of ``P - x`` where ``negative``, of ``x`` elsewhere."""
    out, carry = [], negative.astype(np.int64)          # P - x = (P - 1 - x) + 1
    for v, p in zip(digits, primes):
        d = np.where(negative, p - 1 - v, v) + carry
        carry = (d == p).astype(np.int64)
        out.append(np.where(d == p, 0, d))
    return out


def _to_limbs(digits: list, primes: list) -> np.ndarray:
    """The mixed-radix number in binary: int64 limbs of 30 bits, least significant first (last axis)."""
    bits = sum(log2(p) for p in primes)
    count = int(bits // _LIMB) + 2
    limbs = np.zeros(digits[0].shape + (count,), dtype=np.int64)
    limbs[..., 0] = digits[-1]
    used = log2(primes[-1])                     # bits the value held so far can have
    for v, p in zip(reversed(digits[:-1]), reversed(primes[:-1])):
        used += log2(p)
        carry = v
        for j in range(min(count, int(used // _LIMB) + 2)):
            t = limbs[..., j] * p + carry
            limbs[..., j] = t & _MASK
            carry = t >> _LIMB
    return limbs


def _round(limbs: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """``X * 2^E`` rounded to float64 (nearest, ties to even, subnormals included) for ``X >= 0`` in limbs."""
    count = limbs.shape[-1]
    nonzero = limbs != 0
    top = np.where(nonzero.any(axis=-1), count - 1 - np.argmax(nonzero[..., ::-1], axis=-1), 0)
    top_limb = np.take_along_axis(limbs, top[..., None], axis=-1)[..., 0]
    length = np.where(top_limb > 0, top * _LIMB + np.frexp(top_limb.astype(np.float64))[1], 0)
    # round X at bit r: 53 significant bits, or coarser where the result is subnormal
    r = np.maximum(np.maximum(length - 53, -1074 - exponent), 0)
    s = np.maximum(r - 2, 0)                            # keep up to two guard bits
    guard = r - s
    window = _bits_from(limbs, s)                       # floor(X / 2^s) < 2^55
    sticky = _any_below(limbs, nonzero, s)
    m = window >> guard
    rest = window & ((np.int64(1) << guard) - 1)
    half = np.where(guard > 0, np.int64(1) << np.maximum(guard - 1, 0), 0)
    up = (guard > 0) & ((rest > half) | ((rest == half) & (sticky | (m & 1).astype(bool))))
    m = m + up
    with np.errstate(over="ignore"):
        return np.ldexp(m.astype(np.float64), (r + exponent).astype(np.int64))


def _bits_from(limbs: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``floor(X / 2^shift)`` for values known to be below ``2^55``."""
    padded = np.concatenate([limbs, np.zeros(limbs.shape[:-1] + (3,), dtype=np.int64)], axis=-1)
    j = (shift // _LIMB)[..., None]
    b = shift % _LIMB
    a0 = np.take_along_axis(padded, j, axis=-1)[..., 0]
    a1 = np.take_along_axis(padded, j + 1, axis=-1)[..., 0]
    a2 = np.take_along_axis(padded, j + 2, axis=-1)[..., 0]
    return (a0 >> b) + (a1 << (_LIMB - b)) + (a2 << (2 * _LIMB - b))


def _any_below(limbs: np.ndarray, nonzero: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Whether ``X mod 2^shift != 0``."""
    j = shift // _LIMB
    b = shift % _LIMB
    before = np.concatenate([np.zeros(nonzero.shape[:-1] + (1,), dtype=bool),
                             np.logical_or.accumulate(nonzero, axis=-1)], axis=-1)
    whole = np.take_along_axis(before, j[..., None], axis=-1)[..., 0]
    padded = np.concatenate([limbs, np.zeros(limbs.shape[:-1] + (1,), dtype=np.int64)], axis=-1)
    part = np.take_along_axis(padded, j[..., None], axis=-1)[..., 0] & ((np.int64(1) << b) - 1)
    return whole | (part != 0)
