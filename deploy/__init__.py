"""Compile the contracts, run a local testnet (anvil), deploy and record deployments."""
