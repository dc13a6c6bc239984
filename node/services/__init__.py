"""Long-lived services that run a federation by themselves: ``node run``, ``aggregator run``, ``coordinator run``.

The chain (and the content store) is their only coordination channel: no service talks to another.
Each step a service takes is the same idempotent function a one-shot command calls
(``node.participant.train_and_submit``, ``node.aggregator.aggregate_round``, ``FederationClient``
methods), so a service killed at any point and started again resumes from the chain and the
journal with nothing doubled.

Shared pieces: ``log`` (a line per action, or JSON lines), ``backoff`` (which failures are
transient, the retry delays, an outage reported once), ``loop`` (steps until SIGTERM/SIGINT),
``lock`` (one service per key and workspace), ``metrics`` (prometheus-client).

With ``[chain] confirmations = N`` every service decides on the chain N blocks under its head
(``ledger.chain.finality.settled``) and acts through the same idempotent functions, which check the
latest block again; what a reorganization deeper than N takes back is noticed and done again, once
(each service's docstring says how).
"""
