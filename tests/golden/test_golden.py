"""Golden vectors: fixed inputs -> the global-model CIDs every machine and numpy version must give.

``expected.json`` holds, for each case in ``tests/golden/inputs.py`` (17 updates with signed zeros,
subnormals and outliers; every strategy, with and without clipping), the CID of the aggregate as
safetensors without metadata, a digest of the included/rejected/notes lists, and the exact results
of the in-vector reductions (clipping norms, Krum scores). A change that moves one bit fails here.

- Recompute here: ``.venv/bin/python -m pytest -q tests/golden``.
- Under the oldest and newest supported numpy, in fresh minimal venvs: ``bash .ci/golden``.
- Regenerate, only for a change that is meant to move the bytes: ``.venv/bin/python -m tests.golden.regen``.

Only numpy, safetensors and pytest are needed (no torch, no chain), so the check runs anywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.golden.inputs import CASES, fingerprint, fingerprints, inputs_sha256, reductions, run_case

EXPECTED = json.loads(Path(__file__).with_name("expected.json").read_text())
ROOT = Path(__file__).resolve().parents[2]


def test_the_inputs_are_the_ones_the_golden_values_were_made_from():
    assert inputs_sha256() == EXPECTED["inputs_sha256"]


def test_the_reductions_inside_a_vector_give_the_golden_bits():
    assert reductions() == EXPECTED["reductions"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_strategy_gives_the_golden_global_model_cid(name):
    assert fingerprint(CASES[name]) == EXPECTED["cases"][name]


def test_the_golden_cases_cover_every_strategy_and_the_zero_updates():
    assert {case.strategy["name"] for case in CASES.values()} == {"fedavg", "median", "trimmed-mean", "krum"}
    assert {case.strategy["name"] for case in CASES.values() if "clip_norm" in case.strategy} == {
        "fedavg", "median", "trimmed-mean", "krum"
    }
    result = run_case(CASES["median"])
    zeros = [a for a in result.arrays.values() if np.any(a == 0)]
    assert zeros and not any(np.signbit(a[a == 0]).any() for a in zeros)  # zero medians, all +0.0
    notes = run_case(CASES["fedavg-clipped"]).notes
    assert 0 < len(notes) < 17  # the clip norm clips some updates and leaves others


def _simd_settings() -> list[str]:
    """NPY_DISABLE_CPU_FEATURES values that each take one more SIMD level away from numpy on this CPU."""
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # numpy 1.x
        from numpy.core import _multiarray_umath as umath
    dispatch = list(umath.__cpu_dispatch__)  # lowest level first
    return [""] + [" ".join(dispatch[k:]) for k, feature in enumerate(dispatch) if umath.__cpu_features__.get(feature)]


def test_every_simd_level_numpy_can_use_here_gives_the_golden_bytes():
    """Issue 11.1: the median's CID changed with the SIMD kernels numpy dispatched to (signed zeros)."""
    settings = _simd_settings()
    if len(settings) == 1:
        pytest.skip("this CPU offers numpy no SIMD level above its baseline, so there is nothing to compare")
    script = "import json; from tests.golden.inputs import fingerprints; print(json.dumps(fingerprints()))"
    results = {}
    for setting in settings:
        env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": setting, "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        results[setting or "(all enabled)"] = json.loads(done.stdout)
    reference = results.pop("(all enabled)")
    differing = {setting: sorted(k for k in reference["cases"] if got["cases"][k] != reference["cases"][k]) for setting, got in results.items()}
    assert all(got == reference for got in results.values()), f"cases that change with the SIMD level: {differing}"
    assert reference == fingerprints()
    assert reference["cases"] == EXPECTED["cases"]


def test_the_golden_serialization_is_the_ledgers():
    """The CIDs are of safetensors.numpy bytes; the aggregator writes through ledger.weights (torch)."""
    pytest.importorskip("torch", reason="the minimal golden venvs carry no torch; the main venv runs this")
    import safetensors.numpy

    from ledger.weights import to_safetensors

    for name in ("median", "trimmed-mean-clipped"):
        arrays = run_case(CASES[name]).arrays
        assert to_safetensors(arrays) == safetensors.numpy.save(arrays)
