"""The small VQ-KD codebook the tokenizer tests train: 32 codes of dimension 8, EMA decay 0.9 (BEiT
v2 uses 0.99 over 250k steps; a run of 100 steps needs a faster codebook), batch 32."""

TINY_CODEBOOK = [
    "tokenizer.num_codes=32",
    "tokenizer.code_dim=8",
    "tokenizer.decay=0.9",
    "tokenizer.dead_threshold=4",
    "train.batch_size=32",
    "optim.lr=2e-3",
    "health.fixed_images=32",
]
