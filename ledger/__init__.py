"""The verifiable record as Python sees it: chain client, content store, weights, audit index."""
