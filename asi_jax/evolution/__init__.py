"""The evolution loop's parts: fitness, sampling (more to come: database, loop, workers)."""
