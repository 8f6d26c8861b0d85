"""Evaluation metrics (Fréchet distance, oracle accuracy)."""
