"""rnnedge edge runtime: streams samples through an exported step model and publishes forecasts.

This package is the base install that goes on a device. It must never import TensorFlow, Keras or tf2onnx,
directly or through another module (tests/test_no_tensorflow.py checks it).
"""

__version__ = "0.1.0"
