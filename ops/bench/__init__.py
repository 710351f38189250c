"""`make bench`: throughput, latency and load-burst benchmark (性能基准); see `__main__`."""
