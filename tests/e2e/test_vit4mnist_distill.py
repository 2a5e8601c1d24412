"""Acceptance item 4 of the trainer issue: masked distillation from a *real* trained ViT (PyTorch's
ViT4MNIST, models/vit4mnist.safetensors of the shared data folder) into a fresh student on real MNIST test
images. The loss must fall, and the student's masked-token predictions must move towards the
teacher's whitened features. Skips cleanly when the shared data is absent."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from helpers import realdata
from maskdistill.config import DecoderConfig, ObjectiveConfig, StudentConfig
from maskdistill.data.masking import BlockwiseMasking
from maskdistill.distill.distiller import MaskedDistiller, select_tokens
from maskdistill.distill.parts import Whitening, build_decoder
from maskdistill.models.student import build_student
from maskdistill.models.teacher import Teacher

MEAN, STD = [realdata.MNIST_MEAN], [realdata.MNIST_STD]


def _distiller() -> MaskedDistiller:
    teacher = Teacher(realdata.load_vit4mnist(), MEAN, STD, layer=-1, name="vit4mnist")
    torch.manual_seed(0)
    scfg = StudentConfig(
        arch="vit_small_patch16_224",
        rel_pos_bias="none",
        abs_pos_emb=True,
        layer_scale=None,
        kwargs={"patch_size": 7, "embed_dim": 48, "depth": 3, "num_heads": 3, "in_chans": 1},
    )
    student = build_student(scfg, 28)
    decoder = build_decoder(DecoderConfig(kind="fc"), student.embed_dim, teacher.dim, 3)
    return MaskedDistiller(
        teacher,
        student,
        decoder,
        Whitening("layernorm"),
        ObjectiveConfig(loss="smooth_l1", beta=2.0),
        "masked",
        MEAN,
        STD,
        num_masked=6,
    )


def _cosine(d: MaskedDistiller, images: torch.Tensor, masks: torch.Tensor) -> float:
    """Mean cosine similarity of predictions and whitened teacher targets at masked positions."""
    with torch.no_grad():
        x = images.float() / 255
        target = d.targets(x)
        pred = d.decoder(d.student((x - d.mean) / d.std, masks)[:, 1:])
        return float(F.cosine_similarity(select_tokens(pred, masks, 6), select_tokens(target, masks, 6), dim=-1).mean())


def test_md_from_real_vit4mnist_lowers_the_loss():
    images, _ = realdata.load_mnist_test(1024)  # (n, 1, 28, 28) uint8
    d = _distiller()
    assert d.teacher.grid == (4, 4) and d.teacher.dim == 64
    gen = BlockwiseMasking((4, 4), num_masked=6, min_block=2)
    masks = torch.stack([torch.from_numpy(gen(np.random.default_rng(i))) for i in range(len(images))]).flatten(1)
    held_out = slice(896, 1024)
    cos_before = _cosine(d, images[held_out], masks[held_out])
    opt = torch.optim.AdamW([p for p in d.parameters() if p.requires_grad], lr=2e-3, weight_decay=0.05)
    losses = []
    for _epoch in range(3):
        for i in range(0, 896, 64):
            loss = d(images[i : i + 64], masks[i : i + 64])["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    cos_after = _cosine(d, images[held_out], masks[held_out])
    print(f"loss {first:.4f} -> {last:.4f}; held-out masked cosine {cos_before:.3f} -> {cos_after:.3f}")
    assert last < 0.75 * first, (first, last)
    assert cos_after > cos_before + 0.2, (cos_before, cos_after)
