"""Attention and representation probes (paper Secs. 3-4): attention maps, distance, entropy and NMI,
Fourier amplitudes and singular-value spectra of the residual stream."""
