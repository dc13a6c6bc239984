"""The actors: participants (local training), the aggregator, strategies, data, models, and the CLI."""
