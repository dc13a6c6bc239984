"""Differential privacy for a party's local training: DP-SGD (Opacus) and the ε accountant the auditor repeats."""
