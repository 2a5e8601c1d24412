"""Training: one loop (AMP, clipping, the cosine schedule of paper Table 1, gradient accumulation,
exact resume, DDP, callbacks) and the jobs built on one session helper -- masked-distillation
pre-training (Sec. 2, Eq. 1), supervised classification, fine-tuning and its sweeps (Sec. 4,
Figs. 7-8), the VQ-KD tokenizer (Sec. 5) and the demo."""
