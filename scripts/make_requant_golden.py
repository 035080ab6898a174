"""Write tests/runtime/golden/requant_ties.json: requantisation cases with exact expected outputs.

The expected values are computed here with Python's exact ``fractions.Fraction`` arithmetic applying the
documented rule (docs/int8.md) directly, independently of fcos3d/int8/fixedpoint.py:

    requantize(acc, m, shift) = floor(acc * m * 2**shift / 2**31 + 1/2)      (ties toward +inf)
    quantize_multiplier(s)    = m = floor(frac * 2**24 + 1/2) * 2**7, shift = e where s = frac * 2**e,
                                frac in [1/2, 1); m == 2**31 -> (2**30, e+1); m == 2**30 -> (2**29, e+1);
                                s <= 2**-32 -> (0, 0)

Cases: exact ties (the scaled value is k + 1/2) of both signs for every right shift that admits one,
their neighbours (acc +- 1), int32 extremes, multipliers 0 / 1 / 2**29 / 2**30 / 2**30 + 1 / 2**31 - 1,
left shifts up to 32, right shifts up to 32 (the last one TVM computes exactly), and seeded random
cases; only cases whose exact result fits int32 are kept (the documented domain). Deterministic: run
``python scripts/make_requant_golden.py`` and the file is byte-identical.
"""

from __future__ import annotations

import json
import math
import random
from fractions import Fraction
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "runtime" / "golden" / "requant_ties.json"
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
SEED = 20240531


def exact_requantize(acc: int, m: int, shift: int) -> int:
    """floor(acc * m * 2**(shift - 31) + 1/2) in exact rational arithmetic."""
    return math.floor(Fraction(acc * m) * Fraction(2) ** (shift - 31) + Fraction(1, 2))


def exact_quantize_multiplier(scale: float) -> tuple[int, int]:
    """The documented float scale -> (multiplier, shift) rule, from the exact rational value of the float."""
    s = Fraction(scale)
    if s <= Fraction(1, 2**32):
        return 0, 0
    e = 0  # find e with 2**(e-1) <= s < 2**e
    while s >= Fraction(2) ** e:
        e += 1
    while s < Fraction(2) ** (e - 1):
        e -= 1
    m = math.floor(s * Fraction(2) ** (24 - e) + Fraction(1, 2)) * 2**7  # 24 significant bits, Q31
    if m == 2**31:
        m, e = 2**30, e + 1
    if m == 2**30:
        m, e = 2**29, e + 1
    return m, e


def trailing_zeros(m: int) -> int:
    return (m & -m).bit_length() - 1


def tie_accumulators(m: int, shift: int, rng: random.Random) -> list[int]:
    """int32 accumulators for which acc * m * 2**(shift-31) is exactly k + 1/2 (both signs where possible)."""
    total = 31 - shift  # the right shift applied to acc * m
    v = trailing_zeros(m)
    if m == 0 or total < 1 or v > total - 1:
        return []
    # m / 2**v is odd, so: acc * m == 2**(total-1) (mod 2**total)
    #                <=> acc == 2**(total-1-v) (mod 2**(total-v))
    base, period = 2 ** (total - 1 - v), 2 ** (total - v)
    lo_j = -((base - INT32_MIN) // period)  # smallest j with base + j*period >= INT32_MIN
    hi_j = (INT32_MAX - base) // period
    if lo_j > hi_j:
        return []
    # the most negative and most positive ties, those nearest zero (-1/2, +1/2 when reachable), one random
    js = {lo_j, hi_j, max(lo_j, min(hi_j, -1)), max(lo_j, min(hi_j, 0)), rng.randint(lo_j, hi_j)}
    return sorted(base + j * period for j in js)


def main() -> None:
    rng = random.Random(SEED)
    cases: list[tuple[int, int, int, str]] = []

    special_m = [
        1,
        3,
        2**29,
        2**30,
        2**30 + 1,
        2**31 - 1,
        1518500250,
        1431655765,
        2**30 + 2**15,
        3 * 2**28,
    ]
    random_m = [rng.randrange(2**30, 2**31) for _ in range(4)] + [rng.randrange(2**30, 2**31) | 1 for _ in range(2)]
    multipliers = special_m + random_m

    # 1. exact ties and their neighbours: every right shift 1..63 (shift 30 .. -32) that admits one for
    #    the edge multipliers, ten random shifts for the others.
    all_shifts = list(range(-32, 31))
    for m in multipliers:
        shifts = all_shifts if m in special_m[:6] else sorted(rng.sample(all_shifts, 10))
        for shift in shifts:
            for acc in tie_accumulators(m, shift, rng):
                cases.append((acc, m, shift, "tie"))
                for d in (-1, 1):
                    if INT32_MIN <= acc + d <= INT32_MAX:
                        cases.append((acc + d, m, shift, "near_tie"))

    # 2. int32 extremes and tiny accumulators against every kind of multiplier and shift.
    extreme_acc = [
        INT32_MIN,
        INT32_MIN + 1,
        -(2**30),
        -3,
        -2,
        -1,
        0,
        1,
        2,
        3,
        2**30,
        INT32_MAX - 1,
        INT32_MAX,
    ]
    for m in [0, 1, 2**29, 2**30, 2**30 + 1, 2**31 - 1]:
        for shift in [-32, -31, -30, -16, -2, -1, 0, 1, 2, 16, 31, 32]:
            for acc in extreme_acc:
                cases.append((acc, m, shift, "extreme"))

    # 3. left shifts with small accumulators (the results must still fit int32).
    for shift in range(1, 33):
        for _ in range(6):
            m = rng.choice(multipliers)
            bound = max(1, (2**31 - 1) // max(1, (m * 2**shift) >> 31) // 2)
            acc = rng.randint(-bound, bound)
            cases.append((acc, m, shift, "left_shift"))

    # 4. seeded random cases in the range the graph uses (conv accumulators, scales < 1).
    for _ in range(200):
        acc = rng.randint(-(2**26), 2**26) if rng.random() < 0.7 else rng.randint(INT32_MIN, INT32_MAX)
        m = rng.randrange(2**30 + 1, 2**31)
        shift = rng.randint(-31, 0)
        cases.append((acc, m, shift, "random"))

    rows = []
    seen = set()
    for acc, m, shift, kind in cases:
        key = (acc, m, shift)
        if key in seen:
            continue
        seen.add(key)
        expected = exact_requantize(acc, m, shift)
        if INT32_MIN <= expected <= INT32_MAX:  # the documented domain: results that fit int32
            rows.append((acc, m, shift, expected, kind))

    # quantize_multiplier goldens: hand-picked edge scales + seeded log-uniform ones.
    scales = [
        0.0,
        5e-324,
        2.0**-40,
        2.0**-32,
        math.nextafter(2.0**-32, 1.0),
        2.0**-31 * 0.75,
        2.0**-31,
        1.0 / 128,
        0.1,
        0.3,
        1.0 / 3.0,
        0.5,
        math.nextafter(1.0, 0.0),
        1.0,
        math.nextafter(1.0, 2.0),
        1.0 - 2.0**-40,
        1.0 + 2.0**-40,
        3.0,
        1000.0,
        2.0**20,
        2.0**29,
        math.nextafter(2.0**30, 0.0),
        (2 * (2**30 + 5) + 1) / 2**32,  # frac * 2**31 is exactly k + 1/2: rounds up
        (2 * (2**31 - 1) + 1) / 2**32,  # ... and rounds up to 2**31: carry, then power of two
        (2 * (2**23 + 5) + 1) / 2**25,  # frac * 2**24 is exactly k + 1/2: rounds up (24 significant bits)
        (2 * (2**24 - 1) + 1) / 2**25,  # ... and rounds up to 2**24: carry, then power of two
        (2 * (2**23 + 5) + 1) / 2**25 - 2.0**-40,  # just below that half: rounds down
        float.fromhex("0x1.8p-9"),
        float.fromhex("0x1.fffffep-1"),
    ]
    scales += [2.0 ** rng.uniform(-40.0, 29.0) for _ in range(40)]
    mult_rows = [(float.hex(s), *exact_quantize_multiplier(s)) for s in scales]

    doc = {
        "description": "Requantisation goldens for fcos3d.runtime.reference.fixedpoint; made by "
        "scripts/make_requant_golden.py with exact Fraction arithmetic (independent of fixedpoint.py).",
        "rule": "requantize(acc, m, shift) = floor(acc * m * 2**(shift - 31) + 1/2)  (one rounding, ties toward +inf)",
        "requantize": {
            "columns": ["acc", "multiplier", "shift", "expected", "kind"],
            "rows": [list(r) for r in rows],
        },
        "quantize_multiplier": {
            "columns": ["scale_hex", "multiplier", "shift"],
            "rows": [list(r) for r in mult_rows],
        },
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=None, separators=(",", ":"))
    # one row per line keeps diffs readable
    text = text.replace("],[", "],\n[")
    OUT.write_text(text + "\n")
    kinds: dict[str, int] = {}
    for r in rows:
        kinds[r[4]] = kinds.get(r[4], 0) + 1
    print(f"wrote {OUT}: {len(rows)} requantize cases {kinds}, {len(mult_rows)} scales")


if __name__ == "__main__":
    main()
