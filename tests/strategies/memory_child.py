"""A child process of ``test_memory.py``: aggregate a stored round, then again under an address-space limit.

    python -m tests.strategies.memory_child STORE_DIR STRATEGY LIMIT_BYTES

Prints one JSON line per step. First the all-in-memory method (every update parsed into arrays,
then the strategy) without a limit: the reference CID. Then the address space may grow by
LIMIT_BYTES over what it is (the first step left every pool, thread and arena in place): the
streamed method (``node.aggregator.aggregate_updates``: each update spooled to a file and read a
slice at a time) gives its CID, and the in-memory method runs out of memory (it may also take the
process down: safetensors' parser can panic on a failed allocation, after printing MemoryError).
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

from ledger.chain.federation import RoundInfo, Submission
from ledger.ipfs.store import EmbeddedStore
from ledger.types import Address, Cid, RoundId
from ledger.ipfs.unixfs import cid_of_bytes
from ledger.weights import from_safetensors
from node import aggregator
from node.round_config import RoundConfig
from node.strategies import Update, make_strategy


def _vm_size() -> int:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmSize:")[1].split()[0]) * 1024


def main() -> None:
    store_dir, strategy_name, limit = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    manifest = json.loads((store_dir / "manifest.json").read_text())
    layout = {name: (tuple(shape), dtype) for name, (shape, dtype) in manifest["layout"].items()}
    aggregator.model_layout = lambda name: layout  # the round's model is this layout, not a registered model
    store = EmbeddedStore(store_dir / "store")
    base_cid = Cid(manifest["base_cid"])
    config = RoundConfig(model="mlp", strategy={"name": strategy_name})
    submissions = [Submission(RoundId(1), Address(p), Cid(c), s, b"\0" * 32, 2, "0x") for p, c, s in manifest["updates"]]

    def streamed(chosen: list[Submission]) -> str:
        info = RoundInfo(RoundId(1), base_cid, 0, 1, b"\0" * 32, "open", len(chosen), None, None, 1)
        _, receipt = aggregator.aggregate_updates(
            store=store, info=info, config=config, strategy=make_strategy(strategy_name), submissions=chosen
        )
        return receipt.global_cid

    def in_memory(chosen: list[Submission]) -> str:
        base, _ = from_safetensors(store.get(base_cid), layout=layout)
        updates = [Update(s.participant, from_safetensors(store.get(s.cid), layout=layout)[0], s.samples) for s in chosen]
        result = make_strategy(strategy_name).aggregate(updates, base=base)
        blob = aggregator.global_model_bytes(result.arrays, model="mlp", round_id=1, base_cid=base_cid)
        return cid_of_bytes(blob)

    print(json.dumps({"in_memory_cid": in_memory(submissions)}), flush=True)
    resource.setrlimit(resource.RLIMIT_AS, (_vm_size() + limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    print(json.dumps({"streamed_cid": streamed(submissions)}), flush=True)
    try:
        in_memory(submissions)
    except MemoryError:
        print(json.dumps({"memory_error": True}), flush=True)
        return
    print(json.dumps({"memory_error": False}), flush=True)

if __name__ == "__main__":
    main()
