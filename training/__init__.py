"""Offline training, evaluation and calibration of the liveness model (may import TensorFlow)."""
