"""Dataset preparation: one module per dataset layout plus the shared video, face and audio steps.

openSMILE's native library must be loaded before TensorFlow: loaded after it, openSMILE corrupts
the heap on its first extraction (measured with opensmile 2.6 and TensorFlow 2.21: "malloc():
invalid size"). Importing this package first loads it; audio.py refuses to run, with a clear
message, in a process that imported TensorFlow before it.
"""
import sys

OPENSMILE_AFTER_TENSORFLOW = "tensorflow" in sys.modules and "opensmile" not in sys.modules

import opensmile  # noqa: E402,F401  (import order is the point; see above)
