"""The shared core of the probes: registry, probe context, need checks, the shared streaming pass
(paper Secs. 3-4), the analysis runner and its manifest."""
