"""The evolution loop, task-free: the controller schedules; `db` stores (all SQL), `state`
reads, `report` writes the leaderboard and progress lines, `islands` keeps the populations,
`fitness`, `sampling` and `novelty` score, choose and filter; `analyses` measures a run
for the report (asi_jax/report)."""
