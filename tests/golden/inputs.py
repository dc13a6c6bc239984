"""The golden inputs and cases: fixed updates built from hash output, and what each case aggregates.

The values come from SHAKE-256 output turned into IEEE-754 bit patterns with integer operations
only, so they are the same under every numpy version (numpy's random generators promise no such
thing). They hold what makes aggregation hard to repeat to the bit: one update all ``+0.0`` and one
all ``-0.0``, signed zeros scattered through the others (so medians land on zeros of both signs),
float32 and float16 subnormals, coordinates where every update agrees, magnitudes from 2**-149 to
2**40, three dtypes, tensors long enough that numpy's pairwise summation would kick in, sample
counts from 1 to 2**31 - 1 (weights whose products round in float64), and participant addresses
in mixed case handed over in scrambled order.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import safetensors.numpy

from ledger.ipfs.unixfs import cid_of_bytes
from node.strategies import AggregateResult, Update, strategy_from_params
from node.strategies.krum import krum_scores, pairwise_sq_distances
from node.strategies.numerics import flatten, squared_norm

UPDATES = 17
SHAPES: dict[str, tuple[tuple[int, ...], str]] = {
    "dense.weight": ((40, 50), "float32"),
    "dense.bias": ((50,), "float32"),
    "half.weight": ((300,), "float16"),
    "wide.scale": ((7,), "float64"),
}


def hash_words(label: str, count: int, *, bits: int) -> np.ndarray:
    """``count`` unsigned integers of ``bits`` bits from SHAKE-256 of ``label``."""
    dtype = {16: "<u2", 32: "<u4", 64: "<u8"}[bits]
    data = hashlib.shake_256(label.encode("utf-8")).digest(count * bits // 8)
    return np.frombuffer(data, dtype=dtype).astype(f"u{bits // 8}")


def _float32(label: str, count: int, *, large: bool) -> np.ndarray:
    words = hash_words(label, count, bits=32)
    sign = words & np.uint32(0x8000_0000)
    mantissa = words & np.uint32(0x007F_FFFF)
    exponent = np.uint32(120) + ((words >> np.uint32(23)) & np.uint32(7))  # |x| in [2**-7, 1)
    picks = hash_words(label + "/picks", count, bits=32) % np.uint32(64)
    exponent = np.where(picks == 0, np.uint32(0), exponent)  # subnormal (or zero when the mantissa is 0)
    exponent = np.where(picks == 1, np.uint32(127 + 40 if large else 1), exponent)  # about 2**40, or tiny normals
    bits = np.where(picks == 3, sign, sign | (exponent << np.uint32(23)) | mantissa)  # a signed zero
    return bits.astype(np.uint32).view(np.float32)


def _float16(label: str, count: int, *, large: bool) -> np.ndarray:
    words = hash_words(label, count, bits=16)
    sign = words & np.uint16(0x8000)
    mantissa = words & np.uint16(0x03FF)
    exponent = np.uint16(12) + ((words >> np.uint16(10)) & np.uint16(3))  # |x| in [2**-3, 2)
    picks = hash_words(label + "/picks", count, bits=16) % np.uint16(16)
    exponent = np.where(picks == 0, np.uint16(0), exponent)  # float16 subnormals
    exponent = np.where(picks == 2, np.uint16(29 if large else 12), exponent)  # about 2**14
    bits = np.where(picks == 1, sign, sign | (exponent << np.uint16(10)) | mantissa)
    return bits.astype(np.uint16).view(np.float16)


def _float64(label: str, count: int, *, large: bool) -> np.ndarray:
    words = hash_words(label, count, bits=64)
    kept = words & np.uint64(0x800F_FFFF_FFFF_FFFF)  # sign and mantissa
    exponent = np.uint64(1023 - 4 + (300 if large else 0)) + ((words >> np.uint64(52)) & np.uint64(7))
    return (kept | (exponent << np.uint64(52))).astype(np.uint64).view(np.float64)


_MAKERS = {"float32": _float32, "float16": _float16, "float64": _float64}


def tensors(label: str, *, large: bool = False) -> dict[str, np.ndarray]:
    """One model's worth of tensors in the golden layout, from ``label``; ``large`` adds huge values."""
    arrays = {}
    for name, (shape, dtype) in SHAPES.items():
        count = int(np.prod(shape))
        arrays[name] = _MAKERS[dtype](f"{label}/{name}", count, large=large).reshape(shape)
    return arrays


def _honest(base: dict[str, np.ndarray], noise: dict[str, np.ndarray], *, scale: float) -> dict[str, np.ndarray]:
    """``base + noise * scale`` in each tensor's dtype (float16 via float32), except where ``noise`` is
    zero or subnormal: there the update holds that value itself, signed zeros and subnormals included."""
    out = {}
    for name, values in noise.items():
        dtype = values.dtype
        wide = np.dtype(np.float32) if dtype == np.float16 else dtype
        moved = (base[name].astype(wide) + values.astype(wide) * wide.type(scale)).astype(dtype)
        special = np.abs(values) < np.finfo(dtype).tiny
        out[name] = np.where(special, values, moved).astype(dtype)
    return out


def _agreeing(arrays: dict[str, np.ndarray], shared: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``arrays`` with the first 20 values of each tensor taken from ``shared`` (every update agrees there)."""
    out = {}
    for name, array in arrays.items():
        flat = array.reshape(-1).copy()
        flat[:20] = shared[name].reshape(-1)[:20]
        out[name] = flat.reshape(array.shape)
    return out


def _read_only(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    for array in arrays.values():
        array.flags.writeable = False  # made once and shared: a strategy that wrote into its inputs would raise
    return arrays


@functools.cache
def base_model() -> dict[str, np.ndarray]:
    return _read_only(tensors("fedledger golden base"))


@functools.cache
def _updates() -> tuple[Update, ...]:
    base = base_model()
    shared = tensors("fedledger golden shared")
    counts = hash_words("fedledger golden samples", UPDATES, bits=32) % np.uint32(1000) + np.uint32(1)
    made = []
    for index in range(UPDATES):
        if index in (0, 1):
            sign = -0.0 if index else 0.0
            arrays = {name: np.full(shape, sign, dtype=dtype) for name, (shape, dtype) in SHAPES.items()}
        elif index % 4 == 2:
            arrays = _agreeing(tensors(f"fedledger golden update {index}", large=True), shared)
        else:
            noise = tensors(f"fedledger golden update {index}")
            arrays = _agreeing(_honest(base, noise, scale=2.0 ** -(index % 5)), shared)
        digest = hashlib.sha256(f"participant {index}".encode()).hexdigest()[:40]
        address = "0x" + (digest.upper() if index % 3 == 0 else digest)
        samples = 2**31 - 1 if index == 5 else int(counts[index])
        made.append(Update(address, _read_only(arrays), samples))
    order = np.argsort(hash_words("fedledger golden order", UPDATES, bits=32), kind="stable")
    return tuple(made[int(i)] for i in order)


def updates() -> list[Update]:
    """The 17 updates, in a scrambled (not canonical) order.

    Updates 0 and 1 are all ``+0.0`` and all ``-0.0``; every fourth from 2 on is an outlier with
    huge values; the rest are the base model plus noise scaled by ``2**-(index % 5)``, keeping the
    noise's own signed zeros and subnormals. The first 20 values of every tensor are the same in
    every update but the two zero ones.
    """
    return list(_updates())


def inputs_sha256() -> str:
    """One digest of every input byte, sample count and address, to show the generator is unchanged."""
    digest = hashlib.sha256()
    for arrays, label in [(base_model(), "base")] + [(u.arrays, f"{u.participant}:{u.samples}") for u in updates()]:
        digest.update(label.encode())
        for name in sorted(arrays):
            digest.update(name.encode() + arrays[name].tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Case:
    """One golden case: a strategy (by its recorded parameters) run on some of the updates."""

    strategy: dict[str, Any]
    count: int = UPDATES  # the first ``count`` updates in scrambled order
    with_base: bool = True


CLIP = 30.0  # between the honest updates' delta norms, so some are clipped and some not
CASES: dict[str, Case] = {
    "fedavg": Case({"name": "fedavg"}),
    "fedavg-no-base": Case({"name": "fedavg"}, with_base=False),
    "median": Case({"name": "median"}),
    "median-even": Case({"name": "median"}, count=UPDATES - 1),
    "trimmed-mean": Case({"name": "trimmed-mean", "beta": 0.2}),
    "krum": Case({"name": "krum", "f": 2, "m": 1}),
    "multi-krum": Case({"name": "krum", "f": 3, "m": 6}),
    "krum-no-base": Case({"name": "krum", "f": 2, "m": 4}, with_base=False),
    "fedavg-clipped": Case({"name": "fedavg", "clip_norm": CLIP}),
    "median-clipped": Case({"name": "median", "clip_norm": CLIP}),
    "trimmed-mean-clipped": Case({"name": "trimmed-mean", "beta": 0.1, "clip_norm": CLIP}),
    "multi-krum-clipped": Case({"name": "krum", "f": 2, "m": 5, "clip_norm": CLIP}),
}


def run_case(case: Case) -> AggregateResult:
    return strategy_from_params(case.strategy).aggregate(updates()[: case.count], base=base_model() if case.with_base else None)


def arrays_cid(arrays: dict[str, np.ndarray]) -> str:
    """The CID of the arrays as safetensors without metadata (the same bytes as ledger.weights.to_safetensors)."""
    return str(cid_of_bytes(safetensors.numpy.save(arrays)))


def outcome(result: AggregateResult) -> dict[str, Any]:
    """What the receipt says besides the model: included weights, rejections and notes, as JSON values."""
    return {"included": result.included, "rejected": result.rejected, "notes": result.notes}


def fingerprint(case: Case) -> dict[str, str]:
    result = run_case(case)
    text = json.dumps(outcome(result), sort_keys=True, separators=(",", ":"))
    return {"global_cid": arrays_cid(result.arrays), "outcome_sha256": hashlib.sha256(text.encode()).hexdigest()}


def reductions() -> dict[str, list[str]]:
    """The exact (hex) results of the in-vector reductions, which the float32 outputs may round away:
    each update's squared delta norm (clipping) and the Krum scores with f = 2, in canonical order."""
    base = base_model()
    ordered = sorted(updates(), key=lambda u: u.participant.lower())
    vectors = [flatten(u.arrays, base=base) for u in ordered]
    return {
        "squared_delta_norms": [float.hex(squared_norm([v])) for v in vectors],
        "krum_scores": [float.hex(float(s)) for s in krum_scores(pairwise_sq_distances(vectors), f=2)],
    }


def fingerprints() -> dict[str, Any]:
    """Everything the golden file records: the inputs' digest, the reductions, each case's fingerprint."""
    return {
        "inputs_sha256": inputs_sha256(),
        "reductions": reductions(),
        "cases": {name: fingerprint(case) for name, case in CASES.items()},
    }
