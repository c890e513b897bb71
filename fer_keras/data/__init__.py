"""Data contracts and tf.data pipelines shared by every experiment."""
