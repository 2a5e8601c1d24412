"""maskdistill: masked distillation (MD) for Vision Transformers.

The framework of the paper's Eq. 1, L = M_out(R(N(T(I)), D(S(M_in(I))))), with every part swappable
by config: teacher T, whitening N, student S, decoder D, masks M and objective R.
"""

__version__ = "0.1.0"
