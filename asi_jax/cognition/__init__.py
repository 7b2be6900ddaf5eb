"""Prior research the researcher draws on: entries, embedders, a ScaNN index."""
