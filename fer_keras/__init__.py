"""fer_keras: rerun, tune and extend five facial-emotion-recognition theses on TensorFlow 2 / Keras 3."""

__version__ = "0.1.0"
