"""rnnedge export: Keras run directory -> bundle (streaming step model, manifest, golden vectors)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
