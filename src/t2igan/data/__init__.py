"""Data sets: loaders, the built-in shapes generator and tf.data pipelines."""
