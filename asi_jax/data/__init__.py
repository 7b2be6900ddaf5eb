"""Input pipelines on grain: synthetic probes (MQAR), byte-level corpora, users' text files.

Every source is random access and deterministic in (seed, index), so a pipeline's position is
its whole state: resuming from a checkpoint replays exactly the batches that would have come.
"""
