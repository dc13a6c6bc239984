"""Fixed-point encoding of a weighted update modulo 2**64, and decoding of the sum.

``encode`` clips each coordinate to [-clip, clip], scales by 2**scale_bits, rounds to the nearest
integer (ties to even), multiplies by the party's sample count and keeps the int64 result's two's
complement bits as uint64. Adding such vectors modulo 2**64 and reading the sum back as int64 gives
the exact integer sum, because SecureParams guarantees that it lies in (-2**63, 2**63).

Quantization bound: each coordinate's code differs from clip(v) * 2**scale_bits by at most 1/2,
so the decoded weighted mean differs from the FedAvg of the clipped updates, sum(n_i clip(v_i)) /
sum(n_i), by at most sum(n_i / 2) / sum(n_i) / 2**scale_bits = 2**-(scale_bits + 1) per coordinate,
computed in float64; the final cast to float32 adds at most half a float32 unit in the last place of
the result (|result| x 2**-24).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ledger.secagg.errors import MaskedVectorError
from ledger.secagg.params import SecureParams


def check_samples(samples: object, params: SecureParams) -> int:
    """``samples`` as an int in [1, max_samples], or MaskedVectorError."""
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or not 1 <= samples <= params.max_samples:
        raise MaskedVectorError(
            f"the sample count {samples!r} must be a whole number from 1 to max_samples ({params.max_samples}); "
            "weight the update by at most max_samples."
        )
    return int(samples)


def encode(update: npt.ArrayLike, samples: int, params: SecureParams) -> npt.NDArray[np.uint64]:
    """``update`` (a flat float vector) clipped, in fixed point, weighted by ``samples``, as uint64 words."""
    weight = check_samples(samples, params)
    vector = np.asarray(update)
    if vector.ndim != 1 or vector.dtype.kind != "f":
        raise MaskedVectorError(
            f"the update is a {vector.ndim}-dimensional {vector.dtype} array; give one flat float vector."
        )
    values = vector.astype(np.float64)
    if not np.isfinite(values).all():
        raise MaskedVectorError("the update holds NaN or infinity; fix the training that produced it.")
    np.clip(values, -params.clip, params.clip, out=values)
    values *= float(1 << params.scale_bits)  # exact: a power of two
    codes = np.rint(values).astype(np.int64)
    codes *= weight  # exact: |code| * max_samples < 2**63 by SecureParams
    return codes.view(np.uint64)


def decode(total: npt.NDArray[np.uint64], total_samples: int, params: SecureParams) -> npt.NDArray[np.float32]:
    """The weighted mean that the uint64 sum ``total`` of every survivor's encoding stands for, as float32."""
    if isinstance(total_samples, bool) or not isinstance(total_samples, (int, np.integer)) or total_samples < 1:
        raise MaskedVectorError(f"the total sample count {total_samples!r} must be a positive whole number.")
    if not isinstance(total, np.ndarray) or total.dtype != np.uint64 or total.ndim != 1:
        raise MaskedVectorError("the sum to decode must be a flat numpy uint64 vector.")
    signed = total.view(np.int64).astype(np.float64)
    signed /= float(1 << params.scale_bits)
    signed /= float(total_samples)
    return signed.astype(np.float32)
