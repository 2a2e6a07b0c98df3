"""The worker runtime: claim loops, leases and heartbeats, cancellation, timeouts,
concurrency limits, and the maintenance sweeps."""
