"""Evaluation of detectors and forecasters on public benchmarks (NAB), scored by the published rules."""
