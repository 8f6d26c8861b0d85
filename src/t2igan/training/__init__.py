"""Training harness shared by every chapter."""
