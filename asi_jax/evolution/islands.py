"""Islands: which population proposes next, and migration between populations.

Proposals go to the islands in turn (round-robin over the proposals made so far), so a
resumed run continues where it stopped. Every `migration_interval` proposals, each island's
`migrants` fittest explored candidates join the next island (island i -> i + 1, the last ->
0) unless they are members already; migrations are stored with the proposal count at which
they happened, so each one happens once, also across restarts.
"""

from __future__ import annotations

from collections.abc import Callable

from asi_jax.evolution import state
from asi_jax.evolution.config import IslandConfig
from asi_jax.evolution.db import Database


def next_island(config: IslandConfig, proposed: int) -> int:
    """The island the next proposal is made on, after `proposed` candidates."""
    return proposed % config.count


def add_baseline(db: Database, config: IslandConfig, candidate_id: int) -> None:
    """Baselines belong to every island: each population can build on them."""
    for island in range(config.count):
        db.add_member(island, candidate_id, 0, "baseline")


def migrate(db: Database, config: IslandConfig, proposed: int,
            log: Callable[[str], None]) -> None:  # fmt: skip
    """Runs the migration due at `proposed` proposals, once (a no-op when none is due or it
    happened)."""
    if config.count < 2 or not config.migration_interval or not config.migrants:
        return
    if proposed == 0 or proposed % config.migration_interval:
        return
    if db.get_meta("migrated_at") == proposed:
        return
    with db.transaction():
        moved = []
        for island in range(config.count):
            target = (island + 1) % config.count
            own = [r for r in state.ranked(db, "explore", db.members(island))
                   if db.candidate(r.id)["kind"] == "candidate"]  # fmt: skip
            for r in own[: config.migrants]:
                if db.add_member(target, r.id, proposed, "migration"):
                    moved.append(f"{r.name} {island}->{target}")
        db.set_meta("migrated_at", proposed)
    if moved:
        log(f"[explore] migration after {proposed} proposals: {', '.join(moved)}")
