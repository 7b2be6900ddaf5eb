"""Candidates: the contract agents' mixers follow, and everything that decides if one counts.

policy.py (static AST policy) -> sandbox.py / worker.py (the confined process) ->
checker.py (contract, causality, cost) -> engineer.py (attempts, training, revision).
"""
