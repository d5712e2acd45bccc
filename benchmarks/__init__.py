"""Benchmarks: ``make bench`` (``benchmarks.bench``) and ``benchmarks.gpu_check``."""
