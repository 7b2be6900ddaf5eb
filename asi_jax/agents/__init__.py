"""The agent roles (researcher, analyser, judge) and their offline implementations."""
