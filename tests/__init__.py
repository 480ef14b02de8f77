"""The test suite: `python -m pytest -q` (or plain `pytest`) from the repository root."""
