"""Decision probes (paper Sec. 5 and App. C, Figs. 8a, 11, 12): shape bias, OOD accuracy and error
consistency with humans, in model-vs-human's response format."""
