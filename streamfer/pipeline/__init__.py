"""streamfer runtime: config, batching, scheduling, decisions, metrics, CLI."""
