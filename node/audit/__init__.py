"""The auditor: re-verify the ledger (verify.py) and tell its story (report.py)."""
