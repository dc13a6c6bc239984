"""Aggregation arithmetic against hand-computed cases, determinism, rejections, and the registry."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from ledger.errors import InvalidInputError
from node.strategies import (
    STRATEGY_NAMES,
    FedAvg,
    Krum,
    Median,
    NormClipping,
    TrimmedMean,
    Update,
    make_strategy,
    strategy_from_params,
)
from node.strategies.clipping import clip_update
from node.strategies.fedavg import weighted_average
from node.strategies.krum import krum_scores, pairwise_sq_distances
from node.strategies.median import coordinate_median
from node.strategies.numerics import FloatingPointModeError, squared_distance, squared_norm
from node.strategies.trimmed_mean import trimmed_mean


def up(participant: str, *values: float, samples: int = 1, dtype=np.float32) -> Update:
    return Update(participant, {"w": np.array(values, dtype=dtype)}, samples)


def test_fedavg_weights_by_samples():
    result = FedAvg().aggregate([up("0xa", 1, 2, samples=1), up("0xb", 3, 6, samples=3)])
    assert result.arrays["w"].tolist() == [2.5, 5.0] and result.arrays["w"].dtype == np.float32
    assert result.included == [("0xa", 0.25), ("0xb", 0.75)] and result.rejected == []


def test_median_odd_and_even_counts():
    odd = Median().aggregate([up("0xa", 1, -5), up("0xb", 3, 0), up("0xc", 100, 7)])
    assert odd.arrays["w"].tolist() == [3.0, 0.0]
    even = Median().aggregate([up("0xa", 1), up("0xb", 2), up("0xc", 3), up("0xd", 10)])
    assert even.arrays["w"].tolist() == [2.5]
    assert [w for _, w in even.included] == [0.25] * 4


def test_trimmed_mean_drops_the_extremes_of_each_coordinate():
    updates = [up("0xa", 1, 50), up("0xb", 2, 40), up("0xc", 3, 30), up("0xd", 4, 20), up("0xe", 100, -1000)]
    assert TrimmedMean(beta=0.2).aggregate(updates).arrays["w"].tolist() == [3.0, 30.0]
    assert TrimmedMean(beta=0.0).aggregate(updates).arrays["w"].tolist() == [22.0, -172.0]


def test_krum_picks_the_update_closest_to_its_neighbours():
    updates = [up("0xa", 0), up("0xb", 1), up("0xc", 2), up("0xd", 100)]
    # n - f - 2 = 1 nearest neighbour: scores a=1, b=1, c=1, d=98^2
    scores = krum_scores(pairwise_sq_distances([u.arrays["w"].astype(np.float64) for u in updates]), f=1)
    assert scores.tolist() == [1.0, 1.0, 1.0, 9604.0]
    single = Krum(f=1, m=1).aggregate(updates)
    assert single.arrays["w"].tolist() == [0.0] and single.included == [("0xa", 1.0)]
    assert [p for p, _ in single.rejected] == ["0xb", "0xc", "0xd"]
    multi = Krum(f=1, m=3).aggregate(updates)
    assert multi.arrays["w"].tolist() == [1.0]
    assert [p for p, _ in multi.included] == ["0xa", "0xb", "0xc"]
    assert multi.rejected == [("0xd", "Krum score 9604 is above the 3 kept (highest kept 1): too far from the others")]


def test_krum_measures_distances_on_deltas_from_the_base():
    base = {"w": np.array([10.0, 10.0], np.float32)}
    updates = [up("0xa", 11, 10), up("0xb", 10, 11, samples=3), up("0xc", -50, 10)]
    result = Krum(f=0, m=2).aggregate(updates, base=base)
    assert result.arrays["w"].tolist() == [10.25, 10.75]


def test_norm_clipping_scales_long_deltas_and_notes_them():
    base = {"w": np.array([1.0, 1.0], np.float32)}
    updates = [up("0xa", 4, 5), up("0xb", 1.3, 1.4)]  # deltas (3, 4) norm 5 and (0.3, 0.4) norm 0.5
    clipped, norm = clip_update(updates[0].arrays, base, max_norm=1.0)
    assert norm == pytest.approx(5.0) and clipped["w"].tolist() == pytest.approx([1.6, 1.8])
    result = NormClipping(FedAvg(), max_norm=1.0).aggregate(updates, base=base)
    assert result.arrays["w"].tolist() == pytest.approx([(1.6 + 1.3) / 2, (1.8 + 1.4) / 2])
    assert result.notes == [("0xa", "delta norm 5 clipped to 1")]
    with pytest.raises(InvalidInputError, match="base model"):
        NormClipping(FedAvg(), max_norm=1.0).aggregate(updates)


def test_pure_functions_match_the_strategies():
    arrays = [{"w": np.array([1.0, 4.0])}, {"w": np.array([2.0, 8.0])}, {"w": np.array([9.0, 0.0])}]
    assert weighted_average(arrays, [1, 1, 2])["w"].tolist() == [5.25, 3.0]
    assert coordinate_median(arrays)["w"].tolist() == [2.0, 4.0]
    assert trimmed_mean(arrays, trim=1)["w"].tolist() == [2.0, 4.0]


def _random_updates(count: int = 7) -> tuple[list[Update], dict[str, np.ndarray]]:
    rng = np.random.default_rng(42)
    base = {"a": rng.standard_normal((5, 3)).astype(np.float32), "b": rng.standard_normal(4).astype(np.float32)}
    updates = [
        Update(
            f"0x{'ABCDEF'[i % 6]}{i}",
            {k: (v + rng.standard_normal(v.shape) * (1 + i)).astype(np.float32) for k, v in base.items()},
            int(rng.integers(1, 500)),
        )
        for i in range(count)
    ]
    return updates, base


STRATEGIES = [
    FedAvg(),
    Median(),
    TrimmedMean(beta=0.2),
    Krum(f=1, m=1),
    Krum(f=2, m=3),
    NormClipping(FedAvg(), max_norm=3.0),
    NormClipping(Median(), max_norm=3.0),
]


@pytest.mark.parametrize("strategy", STRATEGIES, ids=repr)
def test_any_input_order_gives_bit_identical_output(strategy):
    updates, base = _random_updates()
    reference = strategy.aggregate(updates, base=base)
    assert all(a.dtype == np.float32 for a in reference.arrays.values())
    rng = np.random.default_rng(0)
    for _ in range(5):
        shuffled = [updates[i] for i in rng.permutation(len(updates))]
        again = strategy.aggregate(shuffled, base=base)
        assert {k: v.tobytes() for k, v in again.arrays.items()} == {k: v.tobytes() for k, v in reference.arrays.items()}
        assert again.included == reference.included and again.rejected == reference.rejected


def test_output_keeps_the_input_dtype():
    result = FedAvg().aggregate([up("0xa", 1, dtype=np.float16), up("0xb", 2, dtype=np.float16)])
    assert result.arrays["w"].dtype == np.float16 and result.arrays["w"].tolist() == [1.5]


def test_unusable_updates_are_rejected_with_reasons_not_raised():
    good = [up("0xa", 1, 2), up("0xb", 3, 4)]
    bad = [
        up("0xc", np.nan, 1),
        up("0xd", 1, 2, 3),
        Update("0xe", {"v": np.zeros(2, np.float32)}, 1),
        up("0xf", 1, 2, samples=0),
        up("0x1", 1, 2, dtype=np.float64),
        Update("0x2", {"w": np.array([1, 2], np.int32)}, 1),
        up("0x3", 1, 2),
        up("0X3", 5, 6),
    ]
    result = FedAvg().aggregate(good + bad)
    assert result.arrays["w"].tolist() == [2.0, 3.0]
    assert [p for p, _ in result.included] == ["0xa", "0xb"]
    reasons = dict(result.rejected)
    assert reasons["0xc"] == "tensor 'w' holds NaN or infinite values"
    assert reasons["0xd"] == "tensor 'w' has shape (3,), expected (2,)"
    assert reasons["0xe"] == "tensor names differ from the model's (missing ['w'], unexpected ['v'])"
    assert reasons["0xf"] == "sample count must be a positive integer, not 0"
    assert reasons["0x1"] == "tensor 'w' has dtype float64, expected float32"
    assert reasons["0x2"] == "tensor 'w' has dtype int32, expected float32"
    assert reasons["0x3"] == reasons["0X3"] == "2 updates from the same participant; only one per round counts"


def test_the_base_model_sets_the_layout():
    base = {"w": np.zeros(3, np.float32)}
    result = Median().aggregate([up("0xa", 1, 2), up("0xb", 3, 4), up("0xc", 1, 1, 1)], base=base)
    assert result.included == [("0xc", 1.0)] and len(result.rejected) == 2


def test_nothing_usable_raises():
    with pytest.raises(InvalidInputError, match="no usable update"):
        Median().aggregate([up("0xa", np.inf)])
    with pytest.raises(InvalidInputError, match="no update"):
        FedAvg().aggregate([])


@pytest.mark.parametrize("strategy", STRATEGIES, ids=repr)
def test_params_round_trip_through_json(strategy):
    params = json.loads(json.dumps(strategy.params()))
    rebuilt = strategy_from_params(params)
    assert rebuilt.params() == strategy.params() and rebuilt.name == strategy.name
    updates, base = _random_updates(5)
    assert rebuilt.aggregate(updates, base=base).arrays["a"].tobytes() == strategy.aggregate(updates, base=base).arrays["a"].tobytes()


def test_make_strategy_by_name():
    assert STRATEGY_NAMES == ("fedavg", "median", "trimmed-mean", "krum")
    assert make_strategy("trimmed-mean", beta=0.1).params() == {"name": "trimmed-mean", "beta": 0.1}
    assert make_strategy("krum", f=2, m=3, clip_norm=5).params() == {"name": "krum", "f": 2, "m": 3, "clip_norm": 5.0}
    assert make_strategy("median", clip_norm=2.0).name == "median"


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: make_strategy("mean"), "unknown strategy 'mean'; choose one of fedavg, median, trimmed-mean, krum"),
        (lambda: make_strategy("median", beta=0.1), "takes no parameter beta"),
        (lambda: make_strategy("trimmed-mean", beta=0.5), r"beta must be a number in \[0, 0.5\)"),
        (lambda: make_strategy("krum", f=-1), "f must be an integer >= 0"),
        (lambda: make_strategy("krum", m=0), "m must be an integer >= 1"),
        (lambda: make_strategy("fedavg", clip_norm=0), "clip_norm must be a positive finite number"),
        (lambda: strategy_from_params({"beta": 0.1}), "need a 'name' key"),
        (lambda: NormClipping(NormClipping(FedAvg(), max_norm=1), max_norm=1), "already applied"),
    ],
)
def test_bad_strategy_configuration_is_refused(call, fragment):
    with pytest.raises(InvalidInputError, match=fragment):
        call()


def test_every_permutation_of_a_small_batch_agrees():
    updates = [up("0xc", 0.1, 0.7, samples=3), up("0xa", 0.3, 0.2, samples=7), up("0xb", 0.9, 0.4, samples=11)]
    outputs = {FedAvg().aggregate(list(p)).arrays["w"].tobytes() for p in itertools.permutations(updates)}
    assert len(outputs) == 1


# Bits fixed by the inputs alone (issue 11.1); tests/golden checks the same across SIMD levels and numpy versions.


@pytest.mark.parametrize("strategy", [Median(), TrimmedMean(beta=0.2), NormClipping(Median(), max_norm=1.0)], ids=repr)
def test_a_zero_coordinate_comes_out_as_positive_zero_whatever_the_signs_of_the_inputs(strategy):
    base = {"w": np.zeros(3, np.float32)}
    for count in (5, 6):
        updates = [up(f"0x{i}", -0.0, 0.0 if i % 2 else -0.0, -0.0 if i < count - 1 else 0.0) for i in range(count)]
        out = strategy.aggregate(updates, base=base).arrays["w"]
        assert out.view(np.uint32).tolist() == [0, 0, 0], (count, out.view(np.uint32))


def test_subnormal_inputs_are_averaged_exactly_not_flushed():
    tiny = np.array([1, 2, 3], np.uint32).view(np.float32)  # 2**-149 .. 3 * 2**-149
    updates = [Update("0xa", {"w": tiny}, 1), Update("0xb", {"w": tiny}, 3)]
    for strategy in (FedAvg(), Median(), TrimmedMean(beta=0.0), Krum(f=0, m=2)):
        assert strategy.aggregate(updates).arrays["w"].view(np.uint32).tolist() == [1, 2, 3], strategy


def test_aggregation_refuses_a_process_that_flushes_subnormals_to_zero():
    torch = pytest.importorskip("torch")
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU has no flush-to-zero mode to switch on")
    try:
        for strategy in STRATEGIES:
            with pytest.raises(FloatingPointModeError, match="flushes subnormal floats to zero"):
                strategy.aggregate([up("0xa", 1.0), up("0xb", 2.0)], base={"w": np.zeros(1, np.float32)})
    finally:
        torch.set_flush_denormal(False)
    assert FedAvg().aggregate([up("0xa", 1.0), up("0xb", 2.0)]).arrays["w"].tolist() == [1.5]


def test_squared_norm_adds_in_the_documented_pairwise_fold():
    # squares 9 * 2**50, 1, 1, 1: the fold adds (9 * 2**50 + 1) + (1 + 1) = 9 * 2**50 + 2 exactly, where a
    # left-to-right sum (numpy's order for short arrays) rounds each + 1 away to 9 * 2**50
    vector = np.array([3 * 2**25, 1, 1, 1], dtype=np.float64)
    assert squared_norm([vector]) == squared_norm([vector[:1], vector[1:3].reshape(2, 1), vector[3:]]) == 9 * 2**50 + 2
    assert squared_distance(vector, np.zeros(4)) == 9 * 2**50 + 2
    assert squared_norm([]) == 0.0 and squared_norm([np.array([3.0])]) == 9.0
    _, norm = clip_update({"w": vector.astype(np.float32)}, {"w": np.zeros(4, np.float32)}, max_norm=1.0)
    assert norm == math.sqrt(9 * 2**50 + 2) != 3 * 2**25


def test_krum_scores_are_exactly_rounded_sums():
    distances = np.zeros((5, 5))  # f = 0: each score sums the 3 nearest of the 4 others
    distances[0, 1:] = distances[1:, 0] = [0.1, 0.2, 0.3, 9.0]
    assert krum_scores(distances, f=0)[0] == 0.6 != 0.1 + 0.2 + 0.3  # exactly rounded, not left to right


def test_fedavg_bits_do_not_depend_on_the_block_size(monkeypatch):
    updates, _ = _random_updates(5)
    arrays, samples = [u.arrays for u in updates], [u.samples for u in updates]
    default = weighted_average(arrays, samples)
    monkeypatch.setattr("node.strategies.fedavg.BLOCK", 4)
    small = weighted_average(arrays, samples)
    total = float(sum(samples))
    for name, array in default.items():
        reference = [float(sum((float(a[name].reshape(-1)[k]) * s for a, s in zip(arrays, samples)), 0.0) / total) for k in range(array.size)]
        assert array.tobytes() == small[name].tobytes() == np.array(reference, np.float32).reshape(array.shape).tobytes()


def test_fedavg_finds_non_finite_updates_through_its_result_and_names_them_as_screening_does():
    def two(participant, a, b):
        return Update(participant, {"a": np.array(a, np.float32), "b": np.array(b, np.float32)}, 2)

    good = [two("0xa", [1, 2], [3]), two("0xb", [3, 4], [5])]
    bad = [
        two("0xc", [np.inf, 0], [1]),
        two("0xd", [-np.inf, 0], [1]),  # with 0xc alone: inf + -inf, NaN in the sum
        two("0xe", [0, 0], [np.nan]),
        two("0xf", [np.nan, 0], [1, 2]),  # a NaN in 'a' and a wrong shape in 'b': the NaN is named first
        two("0x1", [1, 1], [1, 2]),
    ]
    full = Median().aggregate(good + bad).rejected  # median screens in full before it aggregates
    result = FedAvg().aggregate(bad + good)
    assert result.rejected == full and result.arrays["a"].tolist() == [2.0, 3.0] and result.arrays["b"].tolist() == [4.0]
    assert dict(full)["0xf"] == "tensor 'a' holds NaN or infinite values"
    assert dict(full)["0x1"] == "tensor 'b' has shape (2,), expected (1,)"
    with pytest.raises(InvalidInputError, match="no usable update .*0xc: tensor 'a' holds NaN"):
        FedAvg().aggregate(bad)
