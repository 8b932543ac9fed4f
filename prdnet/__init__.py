"""PRDNet-bench: reproducible benchmarking of crystal property prediction models."""

__version__ = "0.1.0"
