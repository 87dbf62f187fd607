"""Exact integer arithmetic for the causal transform, by residues modulo many primes.

A float signal is an integer vector times a power of two: each sample ``s``
is written exactly as ``s = X * 2^E`` with one exponent ``E`` per sample and
integers ``X`` (:func:`to_integers`). The causal transform maps integers to
integers (the zeta matrix is 0/1 and the Möbius matrix integral), so the
spectrum is ``C * 2^E`` with ``C`` exact integers of possibly hundreds of
bits. They are computed modulo primes ``p < 2^26`` in float64 arithmetic,
where every intermediate sum stays an exact integer below ``2^53`` and
residues are reduced without division to balanced values
(:func:`nsp.operations.mode_products.reduce_`; :func:`residues`, and the
modular mode products in :mod:`nsp.transforms.factored`); enough primes are
taken for a proven bound on ``|C|`` (:func:`primes_for`), and ``C`` is
rebuilt from its residues by Garner's mixed-radix algorithm (balanced
digits) and rounded once, correctly (nearest, ties to even), to float64
(:func:`reconstruct`). Everything is vectorised, in blocks that stay in
cache; no step depends on the order of additions, so any backend gives the
same bits.
"""

from __future__ import annotations

from functools import cache
from math import log2

import numpy as np

from nsp.operations.mode_products import reduce_
from nsp.errors import ExactnessError

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


#: entries handled at once by the elementwise steps (small enough for their temporaries to stay in cache)
_CHUNK = 1 << 16


def _columns(shape: tuple):
    """Column slices of a (rows, columns) array holding about :data:`_CHUNK` entries each."""
    rows, columns = shape
    width = max(1, _CHUNK // max(rows, 1))
    return [slice(a, a + width) for a in range(0, columns, width)]


def to_integers(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x`` (samples, n) float as ``mantissa * 2^shift * 2^E[sample]`` exactly.

    Returns ``(mantissa, shift, E)``: odd int64 mantissas with ``|m| < 2^53`` (as few bits as each value
    needs: 24 for float32 data; zeros have mantissa 0), int64 shifts ``>= 0`` and one int64 exponent per
    sample. The integer signal is ``X = mantissa << shift``. Read from the IEEE bit fields.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    mantissa = np.empty(x.shape, dtype=np.int64)
    shift = np.empty(x.shape, dtype=np.int64)           # first the exponent of each mantissa's unit bit
    for cols in _columns(x.shape):
        bits = x[:, cols].view(np.int64)
        field = (bits >> 52) & 0x7FF
        if (field == 0x7FF).any():
            bad = np.argwhere(~np.isfinite(x))[0]
            raise ExactnessError(f"the exact transform needs finite values; entry {tuple(int(i) for i in bad)} "
                                 f"is {x[tuple(bad)]}")
        m = (bits & ((1 << 52) - 1)) | ((field != 0).astype(np.int64) << 52)    # subnormals: no hidden bit
        unit = (m & -m).astype(np.float64).view(np.int64) >> 52           # biased exponent of the lowest set bit
        zeros = np.where(m != 0, unit - 1023, 0)
        m >>= zeros
        mantissa[:, cols] = np.where(bits < 0, -m, m)
        shift[:, cols] = np.maximum(field, 1) - 1075 + zeros
    big = np.iinfo(np.int64).max
    low = np.where(mantissa != 0, shift, big).min(axis=1, keepdims=True)
    low = np.where(low == big, 0, low)
    shift -= low
    shift[mantissa == 0] = 0
    return mantissa, shift, low[:, 0]


def signal_bits(mantissa: np.ndarray, shift: np.ndarray) -> int:
    """The largest bit length of an ``|X|`` of the batch."""
    if not mantissa.size:
        return 0
    lengths = (np.abs(mantissa).astype(np.float64).view(np.int64) >> 52) - 1022      # exact below 2^53
    return int(np.where(mantissa != 0, shift + lengths, 0).max())


def _powers(p: int, count: int) -> np.ndarray:
    """``2^k mod p`` for ``k < count``, balanced (magnitude at most ``p / 2``), as float64."""
    out, v = np.empty(count), 1
    for k in range(count):
        out[k] = v - p if v > p // 2 else v
        v = 2 * v % p
    return out


def residues(mantissa: np.ndarray, shift: np.ndarray, primes: list) -> np.ndarray:
    """``X mod p`` for every prime: float64 of shape ``(primes, samples, n)``, magnitudes below ``p``.

    ``X = mantissa * 2^shift`` with ``|mantissa| < 2^53``; each product of a mantissa part (below 2^27 in
    magnitude) and a balanced power of two (below 2^25) is an exact float64 integer below 2^52.
    """
    out = np.empty((len(primes),) + mantissa.shape)
    split = mantissa.size > 0 and int(np.abs(mantissa).max()) >= 1 << 27     # float64 data: 53-bit mantissas
    top = int(shift.max(initial=0)) + 1 + (26 if split else 0)
    tables = [_powers(p, top) for p in primes]
    for cols in _columns(mantissa.shape):
        m, k = mantissa[:, cols], shift[:, cols]
        low = (m & ((1 << 26) - 1) if split else m).astype(np.float64)
        high = (m >> 26).astype(np.float64) if split else None
        for row, p, table in zip(out, primes, tables):
            part = row[:, cols]
            np.multiply(low, np.take(table, k), out=part)
            reduce_(part, p, 1.0 / p)
            if split:
                part += reduce_(high * np.take(table, k + 26), p, 1.0 / p)
                reduce_(part, p, 1.0 / p)
    return out


def primes_for(bits: float) -> int:
    """How many primes make their product exceed ``2^(bits + 2)``: four times a value of ``bits`` bits."""
    total = 0.0
    for count, p in enumerate(PRIMES, start=1):
        total += log2(p)
        if total > bits + 2:
            return count
    raise ExactnessError(f"coefficients of up to {bits:.0f} bits exceed the {total - 2:.0f} bits that the "
                         f"{len(PRIMES)} primes of the exact transform hold; use precision='float'")


def primes_per_layer(bits: int, bounds: np.ndarray) -> list[int]:
    """The primes each layer (or generation) needs for a signal of ``bits`` bits whose coefficients grow by at
    most ``2^bounds[g]`` in layer ``g``; refuses before any arithmetic when the largest does not fit."""
    bounds = np.asarray(bounds, dtype=np.float64)
    worst = float(bounds.max(initial=0.0))
    capacity = sum(log2(p) for p in PRIMES) - 2
    if bits + worst > capacity:
        layer = int(bounds.argmax())
        raise ExactnessError(f"exact arithmetic would need coefficients of up to {bits + worst:.0f} bits ({bits} "
                             f"bits of the signal, {worst:.0f} bits of growth along the paths into layer {layer} "
                             f"of {bounds.size}); its {len(PRIMES)} primes hold {capacity:.0f} bits; use "
                             f"precision='float'")
    return [primes_for(bits + b) for b in bounds]


def reconstruct(residue: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """Correctly rounded float64 of ``C * 2^E`` from residues ``residue[i] = C mod PRIMES[i]``.

    ``residue``: float64 of shape (primes, samples, m) holding integer representatives below the primes in
    magnitude (canonical or balanced); ``C`` is assumed in ``(-P/4, P/4)`` with ``P`` the product of the primes used
    (:func:`primes_for` guarantees it); ``exponent``: ``E`` per sample. Returns (samples, m).
    """
    k, rows, m = residue.shape
    out = np.empty((rows, m))
    for cols in _columns((rows, m)):
        block = np.ascontiguousarray(residue[:, :, cols]).reshape(k, -1)
        exps = np.broadcast_to(exponent[:, None], (rows, block.shape[1] // rows)).reshape(-1)
        out[:, cols] = _reconstruct(block, exps).reshape(rows, -1)
    return out


def _reconstruct(residue: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """:func:`reconstruct` of a flat (primes, n) block with one exponent per entry."""
    k = residue.shape[0]
    primes = PRIMES[:k]
    digits = _garner(residue, primes)
    # below 2^52 (two digits) the integer is a float64 already, and ldexp rounds it once, correctly
    value = digits[0].copy()
    if k > 1:
        value += digits[1] * primes[0]
    value = np.ldexp(value, exponent)
    large = np.zeros(value.shape, dtype=bool)
    for v in digits[2:]:
        large |= v != 0
    if large.any():
        where = np.flatnonzero(large)
        digits = [v[where].astype(np.int64) for v in digits]
        sign = np.zeros(where.size, dtype=np.int64)
        for v in reversed(digits):          # the sign of a balanced mixed-radix number: its top nonzero digit
            sign = np.where(sign == 0, np.sign(v), sign)
        with np.errstate(over="ignore"):
            value[where] = sign * _round(_to_limbs([v * sign for v in digits], primes), exponent[where])
    return value


def _balanced(value: int, p: int) -> float:
    value %= p
    return float(value - p if value > p // 2 else value)


@cache
def _garner_constants(k: int) -> tuple:
    """Per prime ``p_i``, balanced modulo ``p_i``: ``d = (p_0 ... p_{i-1})^-1`` and ``d * p_0 ... p_{j-1}``
    for ``j < i``."""
    out = []
    for i, p in enumerate(PRIMES[:k]):
        products = [1]
        for q in PRIMES[:i]:
            products.append(products[-1] * q % p)
        inverse = pow(products[-1], -1, p)
        out.append((_balanced(inverse, p), [_balanced(inverse * w, p) for w in products[:-1]]))
    return tuple(out)


def _garner(residue: np.ndarray, primes: list) -> list:
    """Balanced mixed-radix digits ``v`` (``|v_i| <= p_i / 2 + 4``) with ``C = v0 + v1 p0 + v2 p0 p1 + ...``.

    ``v_i = d r_i - sum_{j<i} v_j (d p_0 ... p_{j-1})  mod p_i`` with ``d`` the inverse of
    ``p_0 ... p_{i-1}`` modulo ``p_i`` (constants balanced), in float64: ``|d r_i| < 2^51`` and every
    product of a digit and a constant is below ``2^50 + 2^27``, so five of them and ``d r_i`` sum exactly
    below ``2^53 - p`` before a reduction. ``residue``: (primes, n), magnitudes below the primes.
    """
    digits = []
    for (inverse, weights), row, p in zip(_garner_constants(len(primes)), residue, primes):
        u = row * inverse
        for j, (v, w) in enumerate(zip(digits, weights), start=1):
            u -= v * w
            if j % 5 == 0:
                reduce_(u, p, 1.0 / p)
        digits.append(reduce_(u, p, 1.0 / p))
    return digits


def _to_limbs(digits: list, primes: list) -> np.ndarray:
    """A nonnegative mixed-radix number in binary: int64 limbs of 30 bits, least significant first
    (shape (limbs, n)). Digits may be negative; every partial number from the top is nonnegative."""
    bits = sum(log2(p) for p in primes)
    count = int(bits // _LIMB) + 2
    limbs = np.zeros((count,) + digits[0].shape, dtype=np.int64)
    limbs[0] = digits[-1]
    used = log2(primes[-1])                     # bits the value held so far can have
    for v, p in zip(reversed(digits[:-1]), reversed(primes[:-1])):
        used += log2(p)
        carry = v
        for j in range(min(count, int(used // _LIMB) + 2)):
            t = limbs[j] * p + carry
            np.bitwise_and(t, _MASK, out=limbs[j])
            carry = t >> _LIMB
    return limbs


def _round(limbs: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """``X * 2^E`` rounded to float64 (nearest, ties to even, subnormals included) for ``X >= 0`` given as
    limbs of shape (limbs, n)."""
    count, n = limbs.shape
    columns = np.arange(n)
    nonzero = limbs != 0
    top = count - 1 - np.argmax(nonzero[::-1], axis=0)          # the top nonzero limb (X > 0 here)
    top_limb = limbs[top, columns]
    length = np.where(top_limb > 0, top * _LIMB + np.frexp(top_limb.astype(np.float64))[1], 0)
    # round X at bit r: 53 significant bits, or coarser where the result is subnormal
    r = np.maximum(np.maximum(length - 53, -1074 - exponent), 0)
    s = np.maximum(r - 2, 0)                            # keep up to two guard bits
    guard = r - s
    padded = np.concatenate([limbs, np.zeros((3, n), dtype=np.int64)])
    j, b = s // _LIMB, s % _LIMB
    window = ((padded[j, columns] >> b) + (padded[j + 1, columns] << (_LIMB - b))
              + (padded[j + 2, columns] << (2 * _LIMB - b)))            # floor(X / 2^s) < 2^55
    below = np.concatenate([np.zeros((1, n), dtype=bool), np.logical_or.accumulate(nonzero, axis=0)])
    sticky = below[j, columns] | ((padded[j, columns] & ((np.int64(1) << b) - 1)) != 0)   # X mod 2^s != 0
    m = window >> guard
    rest = window & ((np.int64(1) << guard) - 1)
    half = np.where(guard > 0, np.int64(1) << np.maximum(guard - 1, 0), 0)
    up = (guard > 0) & ((rest > half) | ((rest == half) & (sticky | (m & 1).astype(bool))))
    m = m + up
    with np.errstate(over="ignore"):
        return np.ldexp(m.astype(np.float64), (r + exponent).astype(np.int64))
