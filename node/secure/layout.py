"""A model's tensors as the one flat vector a secure round masks, and back.

The order is the layout's tensor names sorted, each tensor row-major: fixed by the round's layout
alone, so every party flattens the same way and the aggregator and the auditor unflatten the sum
the same way. Only floating-point tensors can be summed in fixed point; a layout with an integer
tensor (a batch counter, say) is refused before anything is masked.
"""

from __future__ import annotations

import numpy as np

from ledger.errors import InvalidInputError
from ledger.weights import Layout


def parameter_count(layout: Layout) -> int:
    """How many numbers the flat vector holds."""
    return sum(int(np.prod(shape, dtype=np.int64)) for shape, _ in layout.values())


def check_summable(layout: Layout) -> None:
    """InvalidInputError naming the first tensor that is not floating point."""
    for name in sorted(layout):
        dtype = layout[name][1]
        if np.dtype(dtype).kind != "f":
            raise InvalidInputError(
                f"tensor {name!r} of the round's model is {dtype}, and a secure round sums floating-point tensors only; "
                "open a plain round for this model, or make the tensor a float (or frozen)."
            )


def flatten(arrays: dict[str, np.ndarray], layout: Layout) -> np.ndarray:
    """The tensors as one float64 vector, in the layout's fixed order."""
    check_summable(layout)
    return np.concatenate([np.asarray(arrays[name], dtype=np.float64).ravel() for name in sorted(layout)])


def unflatten(vector: np.ndarray, layout: Layout) -> dict[str, np.ndarray]:
    """``flatten``'s inverse: each tensor in its shape and dtype."""
    check_summable(layout)
    if len(vector) != parameter_count(layout):
        raise InvalidInputError(f"the vector has {len(vector)} numbers and the model {parameter_count(layout)}.")
    arrays: dict[str, np.ndarray] = {}
    start = 0
    for name in sorted(layout):
        shape, dtype = layout[name]
        size = int(np.prod(shape, dtype=np.int64))
        arrays[name] = np.ascontiguousarray(vector[start:start + size].reshape(shape), dtype=np.dtype(dtype))
        start += size
    return arrays
