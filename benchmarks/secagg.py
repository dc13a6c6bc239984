"""Secure aggregation (ledger.secagg): a party's masking cost, its bytes, and unmasking against plain FedAvg.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.secagg [--params 1000000] [--parties 10,100,1000]
                                                            [--unmask-parties 100] [--repeat 5] [--json]

Measured in one process, each row the best of ``--repeat`` rounds, the rows compared interleaved in each round:
  masking, per party   at each cohort size n of ``--parties`` with k = min(n - 1, 2 * ceil(log2 n))
                       neighbours (SecAgg+), one party's ``masked_vector`` of a ``--params`` float32
                       update: encode, then k pair keys (X25519 + HKDF) and k ChaCha20 masks added
                       modulo 2**64. Against: the same k keystreams generated alone (cryptography's
                       ChaCha20 into a buffer: the floor of any PRG-masked scheme), and plain encoding.
  advertisement        the same party's advertisement: seed, round key, Shamir T-of-k, k HPKE encryptions.
  bytes per party      the masked vector (8 bytes a parameter) plus the advertisement, against the
                       float32 update (4 bytes a parameter) a plain round stores.
  unmasking            ``--unmask-parties`` parties (k as above, T = k/2 + 1) all advertise and submit;
                       with 0 %, 10 % and 30 % of them dropped (drawn with a fixed seed, drawn again until
                       the round is unmaskable), the time to recover the dropouts' seeds from the
                       survivors' reveals and ``secure_sum`` + ``decode``: what the aggregator does, and
                       what the auditor repeats with no key. Against: plain FedAvg (numpy, float64
                       accumulation) of the same survivors' float32 updates.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from eth_utils import to_checksum_address

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger.secagg import (  # noqa: E402
    RoundContext,
    SecureParams,
    check_unmaskable,
    decode,
    encode,
    make_advertisement,
    masked_vector,
    neighbours_of,
    new_round_seed,
    recover_dropout_seeds,
    secure_sum,
    shares_to_reveal,
)

CONTEXT = RoundContext(chain_id=31337, contract="0x5FbDB2315678afecb367f032d93F642f64180aa3", round_id=1)


def best_times(repeat: int, runs: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Each run's best time over ``repeat`` rounds, every round running each row once, interleaved so that
    a shared machine's load changes fall on all rows alike and their ratios hold."""
    best = {name: float("inf") for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def cohort_params(n: int, max_samples: int = 1000) -> SecureParams:
    k = min(n - 1, 2 * math.ceil(math.log2(n)))
    if n * k % 2:
        k -= 1
    cohort = tuple(to_checksum_address(f"0x{i + 1:040x}") for i in range(n))
    return SecureParams(cohort=cohort, threshold=k // 2 + 1, neighbours=k, max_samples=max_samples)


def masking(n: int, length: int, repeat: int) -> dict[str, float | int]:
    params = cohort_params(n)
    party = params.cohort[0]
    involved = (party, *neighbours_of(params, party, CONTEXT))
    long_term = {a: X25519PrivateKey.generate().public_key().public_bytes_raw() for a in params.cohort}
    seeds = {a: new_round_seed() for a in involved}
    ads = {a: make_advertisement(params, CONTEXT, party=a, seed=seeds[a], long_term_keys=long_term) for a in involved}
    update = np.random.default_rng(1).normal(0, 1, length).astype(np.float32)
    k = params.neighbours
    buffer, zeros = np.empty(length, np.uint64), np.zeros(length, np.uint64)
    keys = [os.urandom(32) for _ in range(k)]

    def keystreams() -> None:
        for key in keys:
            Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor().update_into(
                memoryview(zeros).cast("B"), memoryview(buffer).cast("B"))

    times = best_times(repeat, {
        "mask": lambda: masked_vector(update, 100, params, CONTEXT, party=party, seed=seeds[party],
                                      advertisements=ads),
        "keystream": keystreams,
        "encode": lambda: encode(update, 100, params),
        "advertise": lambda: make_advertisement(params, CONTEXT, party=party, seed=seeds[party],
                                                long_term_keys=long_term),
    })
    mask, stream, plain_encode, advertise = (times[name] for name in ("mask", "keystream", "encode", "advertise"))
    advertisement_bytes = len(ads[party].to_bytes())
    masked_bytes, plain_bytes = 8 * length, 4 * length
    return {
        "parties": n, "neighbours": k, "threshold": params.threshold,
        "mask_s": round(mask, 4), "keystream_s": round(stream, 4), "encode_s": round(plain_encode, 4),
        "mask_over_keystream": round(mask / stream, 3),
        "advertise_s": round(advertise, 5),
        "advertisement_bytes": advertisement_bytes,
        "bytes_per_party": masked_bytes + advertisement_bytes,
        "bytes_over_plain": round((masked_bytes + advertisement_bytes) / plain_bytes, 4),
    }


def unmasking(n: int, length: int, repeat: int) -> list[dict[str, float | int]]:
    params = cohort_params(n)
    cohort = list(params.cohort)
    long_term = {a: X25519PrivateKey.generate() for a in cohort}
    registry = {a: k.public_key().public_bytes_raw() for a, k in long_term.items()}
    seeds = {a: new_round_seed() for a in cohort}
    ads = {a: make_advertisement(params, CONTEXT, party=a, seed=seeds[a], long_term_keys=registry) for a in cohort}
    rng = np.random.default_rng(2)
    samples = {a: int(rng.integers(1, params.max_samples + 1)) for a in cohort}
    updates = {a: rng.normal(0, 1, length).astype(np.float32) for a in cohort}
    masked = {a: masked_vector(updates[a], samples[a], params, CONTEXT, party=a, seed=seeds[a], advertisements=ads)
              for a in cohort}
    rows = []
    for fraction in (0.0, 0.1, 0.3):
        draws = 0
        while True:
            draws += 1
            dropped = sorted(rng.choice(cohort, size=round(fraction * n), replace=False).tolist())
            survivors = [a for a in cohort if a not in dropped]
            try:
                check_unmaskable(params, CONTEXT, cohort, survivors)
                break
            except ValueError:
                continue
        reveals = [shares_to_reveal(params, CONTEXT, holder=h, long_term_key=long_term[h], advertisements=ads,
                                    submitted=survivors, dropouts=dropped) for h in survivors]
        total_samples = sum(samples[a] for a in survivors)

        def unmask() -> np.ndarray:
            recovery = recover_dropout_seeds(params, CONTEXT, advertisements=ads, dropouts=dropped, reveals=reveals)
            total = secure_sum(params, CONTEXT, masked={a: masked[a] for a in survivors}, survivors=survivors,
                               dropouts=dropped, seeds=recovery.seeds, advertisements=ads)
            return decode(total, total_samples, params)

        def fedavg() -> np.ndarray:
            accumulator = np.zeros(length, np.float64)
            for a in survivors:
                accumulator += samples[a] * updates[a].astype(np.float64)
            return (accumulator / total_samples).astype(np.float32)

        secure, plain = unmask(), fedavg()
        error = float(np.abs(secure.astype(np.float64) - plain).max())
        assert error <= params.quantization_bound + 2.0**-20, error
        times = best_times(repeat, {"unmask": unmask, "fedavg": fedavg})
        unmask_s, fedavg_s = times["unmask"], times["fedavg"]
        masks_removed = sum(1 for d in dropped for s in neighbours_of(params, d, CONTEXT) if s in survivors)
        rows.append({
            "parties": n, "neighbours": params.neighbours, "threshold": params.threshold,
            "dropouts": len(dropped), "draws": draws, "masks_removed": masks_removed,
            "unmask_s": round(unmask_s, 4), "fedavg_s": round(fedavg_s, 4),
            "unmask_over_fedavg": round(unmask_s / fedavg_s, 3), "max_abs_error": error,
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=1_000_000, help="model parameters (default 1,000,000)")
    parser.add_argument("--parties", default="10,100,1000", help="cohort sizes for the masking rows")
    parser.add_argument("--unmask-parties", type=int, default=100, help="cohort size for the unmasking rows")
    parser.add_argument("--repeat", type=int, default=5, help="runs per row, the best kept (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()

    masking_rows = [masking(int(n), args.params, args.repeat) for n in args.parties.split(",")]
    unmasking_rows = unmasking(args.unmask_parties, args.params, args.repeat)
    document = {
        "benchmark": "secagg",
        "params": args.params,
        "repeat": args.repeat,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}, "
                   f"numpy {np.__version__}",
        "masking": masking_rows,
        "unmasking": unmasking_rows,
    }
    if args.json:
        print(json.dumps(document, indent=2))
        return
    print(f"{args.params:,} parameters, best of {args.repeat}, {document['machine']}")
    print(f"{'parties':>8}{'k':>4}{'T':>4}{'mask s':>9}{'keystream s':>13}{'x keystream':>13}{'encode s':>10}"
          f"{'advertise s':>13}{'adv bytes':>11}{'bytes x plain':>15}")
    for r in masking_rows:
        print(f"{r['parties']:>8}{r['neighbours']:>4}{r['threshold']:>4}{r['mask_s']:>9.3f}{r['keystream_s']:>13.3f}"
              f"{r['mask_over_keystream']:>13.2f}{r['encode_s']:>10.3f}{r['advertise_s']:>13.4f}"
              f"{r['advertisement_bytes']:>11,}{r['bytes_over_plain']:>15.4f}")
    print(f"{'parties':>8}{'k':>4}{'T':>4}{'dropouts':>10}{'masks removed':>15}{'unmask s':>10}{'FedAvg s':>10}"
          f"{'x FedAvg':>10}{'max |error|':>13}")
    for r in unmasking_rows:
        print(f"{r['parties']:>8}{r['neighbours']:>4}{r['threshold']:>4}{r['dropouts']:>10}{r['masks_removed']:>15}"
              f"{r['unmask_s']:>10.3f}{r['fedavg_s']:>10.3f}{r['unmask_over_fedavg']:>10.2f}{r['max_abs_error']:>13.2e}")


if __name__ == "__main__":
    main()
