"""Evaluation of trained encoders: frozen-feature k-NN and linear probes (the demo's table) and the
top-1/top-5 accuracy that fine-tuning reports (paper Sec. 4)."""
