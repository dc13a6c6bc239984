"""Shared fixtures. Area fixtures live in tests/fixtures_*.py and are loaded here as plugins."""

pytest_plugins: list[str] = ["tests.fixtures_chain", "tests.fixtures_store", "tests.fixtures_cli"]
