"""A tiny ViT learns the *shape* of the built-in images (maskdistill.data.synthetic).

The issue's claim is "learnable by a tiny ViT (patch 8 on 64 px) in CPU minutes"; the CNN test in
test_synthetic.py is only a stand-in for it. This checks it directly, with a smaller budget than
the demo: a timm ViT on the 64 px built-in images, patch 8, trained on shape from scratch.
"""
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from maskdistill.data.synthetic import ShapesTextures

# The demo trains 4000 images x 4 epochs (shape 0.91, texture 0.81 held-out); half the images keep
# this near 35 s on one thread. Measured here: 0.476 held-out shape accuracy (chance 0.1).
N_TRAIN, N_VAL, EPOCHS, BATCH, EMBED = 2000, 500, 4, 64, 128
MARGIN = 0.3


def _tensors(split: str, n: int):
    ds = ShapesTextures(n, image_size=64, seed=0, split=split)
    x = np.stack([np.asarray(ds[i][0]) for i in range(n)])
    x = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return x, torch.from_numpy(ds.shape_labels)


@pytest.mark.slow
def test_tiny_vit_learns_shape_well_above_chance():
    timm = pytest.importorskip("timm")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        start = time.perf_counter()
        xtr, ytr = _tensors("train", N_TRAIN)
        xva, yva = _tensors("val", N_VAL)
        net = timm.create_model("vit_small_patch16_224", pretrained=False, img_size=64,
                                patch_size=8, embed_dim=EMBED, depth=4, num_heads=4,
                                num_classes=10, global_pool="avg")
        steps = EPOCHS * -(-N_TRAIN // BATCH)
        opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=0.05)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps)
        gen = torch.Generator().manual_seed(0)
        for _ in range(EPOCHS):
            net.train()
            for idx in torch.randperm(N_TRAIN, generator=gen).split(BATCH):
                loss = F.cross_entropy(net(xtr[idx]), ytr[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        net.eval()
        with torch.no_grad():
            acc = (net(xva).argmax(1) == yva).float().mean().item()
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    # chance is 0.1
    assert acc >= MARGIN, f"held-out shape accuracy {acc:.3f} after {seconds:.0f} s (chance 0.1)"
