"""``fedledger round watch``: follow a federation live, one line per change of any round.

Each step reads the round count and the open rounds (two calls), then only the rounds that are
new or still open: a closed round never changes, so a long federation costs no more per step than
a young one. The first step shows the latest ``history`` rounds as they stand.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.chain.federation import FederationClient, RoundInfo
from ledger.utc import utc_text
from node.services.log import ServiceLog


@dataclass(frozen=True)
class RoundView:
    """What a watcher shows of a round; a change in any field is a line."""

    state: str
    submissions: int


class RoundWatcher:
    """Steps that log what changed on chain since the previous step."""

    def __init__(
        self, federation: FederationClient, *, log: ServiceLog, until_finalized: int | None = None, history: int = 10
    ) -> None:
        self.federation = federation
        self.log = log
        self.until_finalized = until_finalized
        self.history = history
        self.views: dict[int, RoundView] = {}
        self.finalized: set[int] = set()
        self.known = 0  # the highest round id read so far

    def step(self) -> bool:
        count = self.federation.round_count()
        first = self.known + 1 if self.known else max(1, count - self.history + 1)
        still_open = (r for r, view in self.views.items() if view.state == "open")
        for round_id in sorted({*range(first, count + 1), *still_open}):
            self._show(self.federation.round(round_id))
        self.known = max(self.known, count)
        if self.until_finalized is not None and len(self.finalized) >= self.until_finalized:
            self.log.info("complete", f"{len(self.finalized)} round(s) finalized; stopped watching.",
                          finalized=sorted(self.finalized))
            return True
        return False

    def _show(self, info: RoundInfo) -> None:
        n = info.round_id
        view = RoundView(info.state, info.submissions)
        before = self.views.get(n)
        self.views[n] = view
        if info.state == "finalized":
            self.finalized.add(n)
        if view == before:
            return
        fields = {"round": n, "state": info.state, "submissions": info.submissions, "min_updates": info.min_updates}
        if before is None:
            model = f", global model {info.global_cid}" if info.global_cid else ""
            self.log.info("round", f"round {n}: {info.state}, base {info.base_cid}, {info.submissions}/{info.min_updates} "
                          f"updates, closes at {utc_text(info.deadline)}{model}.", base_cid=info.base_cid,
                          deadline=info.deadline, global_cid=info.global_cid, **fields)
        elif info.state == "open":
            self.log.info("submissions", f"round {n}: {info.submissions}/{info.min_updates} updates.", **fields)
        elif info.state == "finalized":
            self.log.info("finalized", f"round {n}: finalized with {info.submissions} updates: global model "
                          f"{info.global_cid}.", global_cid=info.global_cid, **fields)
        else:
            self.log.info("cancelled", f"round {n}: closed without a global model (cancelled below its minimum, "
                          f"or aborted) with {info.submissions} updates.", **fields)
