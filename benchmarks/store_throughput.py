"""Content store throughput: add + verify (get) of one file against plain sha256 of the same bytes.

    .venv/bin/python benchmarks/store_throughput.py [--mb 100] [--repeat 3] [--dir DIR] [--json]

Measured in one run on the same bytes, best of ``--repeat``:
  sha256        hashlib.sha256 over the whole buffer, one pass (the yardstick)
  cid only      ledger.ipfs.unixfs.cid_of_bytes: chunking, sha256 per 256 KiB chunk, dag-pb parents, no I/O
  add           EmbeddedStore.add_bytes into an empty store (hash, write one pack, fdatasync, index)
  add, no fsync the same with os.fsync and os.fdatasync stubbed out (shows what durability costs;
                SQLite's own sync of the index stays)
  write only    the same bytes written to one new file, no hashing, no sync (the page cache's floor)
  durable write the same, then fdatasync (the disk's floor: what any durable add of them costs)
  verify (get)  EmbeddedStore.get: read every block, re-hash it against its CID, return one bytes object
  verify stream EmbeddedStore.iter_content: the same checks block by block, nothing reassembled (the
                store's default read: `ipfs serve`'s cat, get and dag/export)
  add + verify  size / (add time + streamed verify time): a durable add, then a verifying read
  add + get     size / (add time + get time): the same with the read reassembled into one bytes object
  http add/get  with --http: KuboStore over HTTP to an in-process `fedledger ipfs serve` on the same disk;
                "http add (first)" into an emptied served store each time (every block written and made
                durable), "http add (again)" of bytes the store already holds (no block written)
Each is reported in MB/s and as a ratio to sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger.ipfs.server import make_server
from ledger.ipfs.store import EmbeddedStore, KuboStore
from ledger.ipfs.unixfs import cid_of_bytes


def best_of(repeat: int, run: Callable[[], object], setup: Callable[[], None] = lambda: None) -> float:
    times = []
    for _ in range(repeat):
        setup()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def write_only(data: bytes, path: Path, *, durable: bool) -> None:
    """Write the bytes to one new file (then fdatasync it if ``durable``): what the I/O costs by itself."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view[: 8 << 20]) :]
        if durable:
            os.fdatasync(fd)
    finally:
        os.close(fd)


def time_http(data: bytes, repo: Path, repeat: int) -> dict[str, float]:
    """KuboStore add and get against the Kubo RPC server on 127.0.0.1 (in this process, its own threads)."""
    server = make_server(EmbeddedStore(repo), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def empty_the_served_store() -> None:  # the server's store names only paths: it works on in the new folders
        shutil.rmtree(repo, ignore_errors=True)
        EmbeddedStore(repo)

    try:
        client = KuboStore(f"http://127.0.0.1:{server.server_address[1]}")
        timings = {"http add (first)": best_of(repeat, lambda: client.add_bytes(data), empty_the_served_store)}
        cid = client.add_bytes(data)
        timings["http add (again)"] = best_of(repeat, lambda: client.add_bytes(data))  # every block already stored
        timings["http get"] = best_of(repeat, lambda: client.get(cid))
        return timings
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="file size in MiB (default 100)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is kept")
    parser.add_argument("--dir", type=Path, default=None, help="folder for the store (default: a temp folder)")
    parser.add_argument("--http", action="store_true", help="also time KuboStore over HTTP to `ipfs serve`")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()

    size = args.mb * 1024 * 1024
    data = np.random.default_rng(0).bytes(size)
    base = Path(tempfile.mkdtemp(prefix="fedledger-bench-", dir=args.dir))
    store_dir = base / "store"

    def fresh() -> None:
        shutil.rmtree(store_dir, ignore_errors=True)

    try:
        timings = {"sha256": best_of(args.repeat, lambda: hashlib.sha256(data).digest())}
        timings["cid only"] = best_of(args.repeat, lambda: cid_of_bytes(data))
        with mock.patch("os.fsync"), mock.patch("os.fdatasync"):
            timings["add, no fsync"] = best_of(args.repeat, lambda: EmbeddedStore(store_dir).add_bytes(data), fresh)
        timings["add"] = best_of(args.repeat, lambda: EmbeddedStore(store_dir).add_bytes(data), fresh)
        store = EmbeddedStore(store_dir)
        cid = store.add_bytes(data)
        assert store.get(cid) == data
        timings["verify (get)"] = best_of(args.repeat, lambda: store.get(cid))
        timings["verify stream"] = best_of(args.repeat, lambda: sum(map(len, store.iter_content(cid))))
        floor = base / "floor"
        timings["write only"] = best_of(args.repeat, lambda: write_only(data, floor, durable=False))
        timings["durable write"] = best_of(args.repeat, lambda: write_only(data, floor, durable=True))
        if args.http:
            timings.update(time_http(data, base / "served", args.repeat))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    timings["add + verify"] = timings["add"] + timings["verify stream"]
    timings["add + get"] = timings["add"] + timings["verify (get)"]

    mb = size / 1e6
    rows = {name: {"seconds": round(t, 4), "MB_per_s": round(mb / t, 1), "ratio_to_sha256": round(timings["sha256"] / t, 3)}
            for name, t in timings.items()}
    document = {
        "benchmark": "store_throughput",
        "size_bytes": size,
        "repeat": args.repeat,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}",
        "results": rows,
        "cid": cid,
    }
    if args.json:
        print(json.dumps(document, indent=2))
        return
    print(f"{args.mb} MiB, best of {args.repeat}, {document['machine']}")
    print(f"{'':18}{'seconds':>10}{'MB/s':>10}{'x sha256':>10}", flush=True)
    for name, row in rows.items():
        print(f"{name:18}{row['seconds']:>10.3f}{row['MB_per_s']:>10.1f}{row['ratio_to_sha256']:>10.2f}")


if __name__ == "__main__":
    main()
