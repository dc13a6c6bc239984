"""The audit index: every Federation event in SQLite, kept in step with the chain.

``LedgerIndex.sync()`` resumes after the last indexed block and reads ``eth_getLogs`` in block
ranges whose size halves whenever the node refuses one (too many results, a timeout, a payload
limit) and doubles again after each success. Each batch is committed with the hash of its last
block, so an interrupted sync loses nothing and restarts where it stopped.

Reorgs: the hashes of the blocks holding events and of the last indexed block are stored. Before
reading new logs, the stored hashes of the recent blocks (``reorg_depth``) are compared with the
chain's, newest first; everything above the newest block that still matches is dropped and read
again. A reorg deeper than that window drops the whole index, which is then rebuilt.

A batch is stored only when its logs and its last block's hash come from one view of the chain:
the hash is read before the logs and again after (a block's hash commits to all its ancestors).
A reorg in between (the logs from one fork, the hash from another) would otherwise leave the
old fork's events under a last block that still matches, where no later check looks. The batch
is read again instead.

An index records the contract address and chain id it was built for and refuses to serve another
deployment. It works on any JSON-RPC URL (anvil, a public node) and on the in-process chain.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Self

import requests
from eth_abi import decode
from eth_utils import to_checksum_address
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from web3 import EthereumTesterProvider, Web3
from web3.exceptions import Web3Exception

from ledger.ipfs.cid import cid_from_parts
from ledger.errors import AuditIndexError, ChainUnreachableError, LedgerError
from ledger.chain.federation import load_artifact

SCHEMA_VERSION = "1"
DEFAULT_BATCH = 2_000
MAX_BATCH = 100_000
REORG_DEPTH = 128
MAX_VIEW_RETRIES = 8

# (codec field, digest field) -> the name of the CID field the index stores instead.
_CID_FIELDS = {
    ("termsCodec", "termsDigest"): "terms_cid",
    ("baseCodec", "baseDigest"): "base_cid",
    ("codec", "digest"): "cid",
    ("globalCodec", "globalDigest"): "global_cid",
    ("receiptCodec", "receiptDigest"): "receipt_cid",
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (number INTEGER PRIMARY KEY, hash TEXT NOT NULL, timestamp INTEGER);
CREATE TABLE IF NOT EXISTS events (
    block INTEGER NOT NULL,
    log_index INTEGER NOT NULL,
    tx_hash TEXT NOT NULL,
    name TEXT NOT NULL,
    round_id INTEGER,
    participant TEXT,
    args TEXT NOT NULL,
    PRIMARY KEY (block, log_index)
);
CREATE INDEX IF NOT EXISTS events_by_name ON events (name, block, log_index);
CREATE INDEX IF NOT EXISTS events_by_round ON events (round_id);
CREATE INDEX IF NOT EXISTS events_by_participant ON events (participant);
"""


@dataclass(frozen=True)
class IndexedEvent:
    """One contract event: its name, place in the chain, and arguments (CIDs as text, bytes as 0x-hex)."""

    name: str
    block: int
    log_index: int
    tx_hash: str
    args: dict[str, Any]


@dataclass(frozen=True)
class SyncResult:
    """What one ``sync()`` did."""

    from_block: int
    to_block: int
    events: int
    batches: int
    refused: int  # ranges the node refused (each followed by a smaller one)
    reorg_from: int | None  # first block dropped and read again, None when no reorg was seen


def _plain(value: Any) -> Any:
    """A JSON-storable form of a decoded event argument."""
    if isinstance(value, (bytes, bytearray)):
        return Web3.to_hex(value)
    return value


def normalize_args(args: dict[str, Any]) -> dict[str, Any]:
    """Event arguments with each (codec, digest) pair turned into a CID (None if the pair is not one)."""
    out = {key: _plain(value) for key, value in args.items()}
    for (codec, digest), name in _CID_FIELDS.items():
        if codec in args and digest in args:
            try:
                out[name] = cid_from_parts(int(args[codec]), bytes(args[digest]))
            except LedgerError:
                out[name] = None
            del out[codec], out[digest]
    return out


class _RangeRefused(Exception):
    """The node answered eth_getLogs with an error (typically: range or result set too large)."""


def _bytes(value: Any) -> bytes:
    return bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)


def _int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


class _EventDecoder:
    """Decodes one event's logs with eth_abi directly (web3's process_log is several times slower)."""

    def __init__(self, abi: dict[str, Any]) -> None:
        self.name = str(abi["name"])
        types = ",".join(item["type"] for item in abi["inputs"])
        self.topic = bytes(Web3.keccak(text=f"{self.name}({types})"))
        self.indexed = [(item["name"], item["type"]) for item in abi["inputs"] if item["indexed"]]
        self.data = [(item["name"], item["type"]) for item in abi["inputs"] if not item["indexed"]]
        self._checksums: dict[str, str] = {}

    def _value(self, kind: str, value: Any) -> Any:
        if kind == "address":
            if value not in self._checksums:
                self._checksums[value] = to_checksum_address(value)
            return self._checksums[value]
        return value

    def decode(self, topics: list[bytes], data: bytes) -> dict[str, Any]:
        args: dict[str, Any] = {}
        for (name, kind), topic in zip(self.indexed, topics[1:]):
            args[name] = self._value(kind, decode([kind], topic)[0])
        values = decode([kind for _, kind in self.data], data) if self.data else ()
        for (name, kind), value in zip(self.data, values):
            args[name] = self._value(kind, value)
        return args


class LedgerIndex:
    """The SQLite index of one deployment (``address`` on ``chain_id``), read from ``w3``."""

    def __init__(
        self,
        path: Path | str,
        *,
        w3: Web3,
        address: str,
        chain_id: int,
        start_block: int = 0,
        batch_size: int = DEFAULT_BATCH,
        reorg_depth: int = REORG_DEPTH,
    ) -> None:
        self.path = Path(path)
        self.w3 = w3
        self.address = to_checksum_address(address)
        self.chain_id = int(chain_id)
        self.start_block = int(start_block)
        self.batch_size = max(1, int(batch_size))
        self.reorg_depth = max(1, int(reorg_depth))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path)
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            raise AuditIndexError(
                f"{self.path} is not a fedledger audit index ({error}); delete it, it is rebuilt from the chain."
            ) from None
        self._check_meta()

    @classmethod
    def for_federation(cls, path: Path | str, federation: Any, **options: Any) -> LedgerIndex:
        """The index at ``path`` of a ``FederationClient``'s deployment."""
        return cls(
            path,
            w3=federation.w3,
            address=federation.address,
            chain_id=federation.chain_id,
            start_block=federation.from_block,
            **options,
        )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- meta

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _check_meta(self) -> None:
        address, chain_id = self._meta("address"), self._meta("chain_id")
        if address is None:
            with self._db:
                self._db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [
                        ("schema", SCHEMA_VERSION),
                        ("address", self.address),
                        ("chain_id", str(self.chain_id)),
                        ("start_block", str(self.start_block)),
                        ("last_block", str(self.start_block - 1)),
                    ],
                )
            return
        if address != self.address or chain_id != str(self.chain_id):
            raise AuditIndexError(
                f"the audit index {self.path} was built for contract {address} on chain id {chain_id}, not for "
                f"this deployment ({self.address} on chain id {self.chain_id}); delete the file, it is rebuilt "
                "from the chain."
            )
        if self._meta("schema") != SCHEMA_VERSION:
            raise AuditIndexError(
                f"the audit index {self.path} has another format (schema {self._meta('schema')}); "
                "delete the file, it is rebuilt from the chain."
            )

    @property
    def last_block(self) -> int:
        """The last block whose events are all in the index (start_block - 1 before the first sync)."""
        return int(self._meta("last_block") or self.start_block - 1)

    def _set_last_block(self, number: int) -> None:
        self._db.execute("UPDATE meta SET value = ? WHERE key = 'last_block'", (str(number),))

    # ---------------------------------------------------------------- chain access

    @contextmanager
    def _rpc(self) -> Iterator[None]:
        try:
            yield
        except (requests.ConnectionError, ConnectionError) as error:
            raise ChainUnreachableError(
                f"the chain stopped answering while indexing ({error.__class__.__name__}); "
                "check that it runs and run the command again (the index resumes)."
            ) from None

    def _block_hash(self, number: int) -> str | None:
        with self._rpc():
            try:
                block = self.w3.eth.get_block(number)
            except Web3Exception:  # BlockNotFound: beyond the head after a reorg
                return None
        return Web3.to_hex(block["hash"])

    @cached_property
    def _decoders(self) -> dict[bytes, _EventDecoder]:
        events = [_EventDecoder(item) for item in load_artifact()["abi"] if item["type"] == "event"]
        return {event.topic: event for event in events}

    def _get_logs(self, first: int, last: int) -> list[Any]:
        """Logs of the contract in [first, last]: raw JSON over HTTP (web3's formatters cost more than
        the request), web3's call for the in-process chain."""
        with self._rpc():
            if isinstance(self.w3.provider, EthereumTesterProvider):
                return list(self.w3.eth.get_logs({"address": self.address, "fromBlock": first, "toBlock": last}))
            reply = self.w3.provider.make_request(
                "eth_getLogs", [{"address": self.address, "fromBlock": hex(first), "toBlock": hex(last)}]
            )
        if "error" in reply:
            raise _RangeRefused(str(reply["error"].get("message", reply["error"])))
        return list(reply["result"])

    # ---------------------------------------------------------------- sync

    def _find_fork(self) -> int | None:
        """The first block to read again because the chain changed under it, or None."""
        last = self.last_block
        rows = self._db.execute(
            "SELECT number, hash FROM blocks WHERE number > ? ORDER BY number DESC", (last - self.reorg_depth,)
        ).fetchall()
        dropped_above: int | None = None
        for number, stored in rows:
            if self._block_hash(number) == stored:
                break
            dropped_above = number
        else:
            if dropped_above is not None:  # every recent block changed: deeper than the window, start over
                return self.start_block
        if dropped_above is None:
            return None
        # Re-read from just after the newest block that still matches.
        matched = self._db.execute(
            "SELECT MAX(number) FROM blocks WHERE number < ?", (dropped_above,)
        ).fetchone()[0]
        return (matched + 1) if matched is not None else self.start_block

    def _one_view(self, logs: list[Any], last: int, last_hash: str) -> bool:
        """Whether ``logs`` (read for blocks up to ``last``) and ``last_hash`` show the same chain.

        The last block had ``last_hash`` before the logs were read and still has it after, so every
        block up to it (each hash commits to its parent's) was the same while the logs were read;
        logs of the last block itself must name that hash too.
        """
        if self._block_hash(last) != last_hash:
            return False
        return all(Web3.to_hex(_bytes(log["blockHash"])) == last_hash for log in logs if _int(log["blockNumber"]) == last)

    def _drop_from(self, first: int) -> None:
        with self._db:
            self._db.execute("DELETE FROM events WHERE block >= ?", (first,))
            self._db.execute("DELETE FROM blocks WHERE number >= ?", (first,))
            self._set_last_block(max(first, self.start_block) - 1)

    def _store_batch(self, logs: list[Any], last: int, last_hash: str) -> int:
        rows, blocks = [], {last: (last_hash, None)}
        for log in logs:
            topics = [_bytes(topic) for topic in log["topics"]]
            decoder = self._decoders.get(topics[0]) if topics else None
            if decoder is None:
                continue
            args = normalize_args(decoder.decode(topics, _bytes(log["data"])))
            number = _int(log["blockNumber"])
            rows.append(
                (
                    number,
                    _int(log["logIndex"]),
                    Web3.to_hex(_bytes(log["transactionHash"])),
                    decoder.name,
                    None if args.get("roundId") is None else int(args["roundId"]),
                    args.get("participant"),
                    json.dumps(args, sort_keys=True),
                )
            )
            stamp = log.get("blockTimestamp")  # served by some nodes (anvil): join times for free
            blocks[number] = (Web3.to_hex(_bytes(log["blockHash"])), None if stamp is None else _int(stamp))
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            self._db.executemany(
                "INSERT INTO blocks (number, hash, timestamp) VALUES (?, ?, ?) "
                "ON CONFLICT (number) DO UPDATE SET hash = excluded.hash, "
                "timestamp = COALESCE(excluded.timestamp, CASE WHEN blocks.hash = excluded.hash THEN blocks.timestamp END)",
                [(number, block_hash, stamp) for number, (block_hash, stamp) in blocks.items()],
            )
            self._set_last_block(last)
        return len(rows)

    def sync(self, *, to_block: int | None = None, progress: bool = False) -> SyncResult:
        """Bring the index up to ``to_block`` (default: the chain's head), noticing reorgs first."""
        reorg_from = self._find_fork()
        if reorg_from is not None:
            self._drop_from(reorg_from)
        with self._rpc():
            head = int(self.w3.eth.block_number) if to_block is None else int(to_block)
        first = self.last_block + 1
        events = batches = refused = changed = 0
        size = self.batch_size
        bar = _progress(progress, total=max(0, head - first + 1))
        with bar:
            task = bar.add_task("indexing blocks", total=max(0, head - first + 1))
            cursor = first
            while cursor <= head:
                last = min(head, cursor + size - 1)
                last_hash = self._block_hash(last)
                if last_hash is None:  # the chain got shorter while reading: a reorg, next sync handles it
                    break
                try:
                    logs = self._get_logs(cursor, last)
                except (_RangeRefused, Web3Exception, ValueError, requests.RequestException) as error:
                    if size == 1:
                        raise AuditIndexError(
                            f"the node refuses eth_getLogs even for block {cursor} alone ({error}); "
                            "use another RPC URL (--rpc) that serves logs."
                        ) from None
                    size, refused = max(1, size // 2), refused + 1
                    continue
                if not self._one_view(logs, last, last_hash):
                    changed += 1
                    if changed > MAX_VIEW_RETRIES:
                        raise AuditIndexError(
                            f"the chain kept reorganizing blocks {cursor}-{last} while they were read "
                            f"({changed} tries); run the command again once the node has settled."
                        )
                    continue
                events += self._store_batch(logs, last, last_hash)
                batches += 1
                bar.advance(task, last - cursor + 1)
                cursor = last + 1
                size = min(MAX_BATCH, size * 2)
        return SyncResult(first, self.last_block, events, batches, refused, reorg_from)

    # ---------------------------------------------------------------- reading

    def events(
        self,
        names: str | Iterable[str] | None = None,
        *,
        round_id: int | None = None,
        participant: str | None = None,
    ) -> list[IndexedEvent]:
        """Indexed events in chain order, optionally only these names, round or participant."""
        sql, params = "SELECT name, block, log_index, tx_hash, args FROM events WHERE 1 = 1", []
        if names is not None:
            names = [names] if isinstance(names, str) else list(names)
            sql += f" AND name IN ({', '.join('?' * len(names))})"
            params += names
        if round_id is not None:
            sql += " AND round_id = ?"
            params.append(int(round_id))
        if participant is not None:
            sql += " AND participant = ?"
            params.append(to_checksum_address(participant))
        rows = self._db.execute(sql + " ORDER BY block, log_index", params).fetchall()
        return [IndexedEvent(name, block, index, tx, json.loads(args)) for name, block, index, tx, args in rows]

    def block_timestamp(self, number: int) -> int:
        """The timestamp of block ``number`` (read from the chain once, then kept)."""
        row = self._db.execute("SELECT timestamp FROM blocks WHERE number = ?", (number,)).fetchone()
        if row is not None and row[0] is not None:
            return int(row[0])
        with self._rpc():
            block = self.w3.eth.get_block(number)
        with self._db:
            self._db.execute(
                "INSERT INTO blocks (number, hash, timestamp) VALUES (?, ?, ?) "
                "ON CONFLICT (number) DO UPDATE SET timestamp = excluded.timestamp",
                (number, Web3.to_hex(block["hash"]), int(block["timestamp"])),
            )
        return int(block["timestamp"])


def _progress(enabled: bool, *, total: int) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not enabled or total == 0,
    )
