"""Optimisation-geometry probes (paper Sec. 4, Fig. 7): Hessian-vector products, Lanczos, power
iteration, Hutchinson's trace, spectral density, per-block sharpness and loss landscapes."""
