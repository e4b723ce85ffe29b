"""rnnedge trainer: fits compact SimpleRNN / LSTM / GRU forecasters on sensor CSVs (needs the 'train' extra)."""

import os

# TensorFlow's C++ start-up chatter is noise for a command-line tool; real errors still surface as exceptions.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
