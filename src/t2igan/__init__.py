"""t2igan: reference Keras 3 / TensorFlow implementations of text-to-image GANs."""

__version__ = "0.1.0"
