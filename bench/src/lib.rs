//! trove-bench: rebuild-latency workloads and scenarios (in progress).
