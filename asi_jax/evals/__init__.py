"""Evaluation: held-out loss and bits per token, MQAR recall, baseline sweeps."""
