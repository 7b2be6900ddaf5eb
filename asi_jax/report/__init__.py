"""The run report: a self-contained HTML page from a run's database (page.py), its plots
(svg.py) and the read-only access to a database the controller may be writing (source.py).
The analyses themselves are pure functions in asi_jax/evolution/analyses.py."""
