"""Thesis 003's analyses (§5.4-5.6): categories on the valence/arousal plane (va_plane), t-SNE
maps of a model's layers (embedding), activation maximisation and saliency (maximisation), and
the ``fer-keras analyse`` command that runs them on a trained run (report).

Only ``report``, whose parser needs nothing heavy, is imported here; the command line reaches it
as ``analysis.report``. Nothing else in fer_keras imports this package (imports point one way).
"""
from fer_keras.analysis import report  # noqa: F401
