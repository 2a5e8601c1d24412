"""The VQ-KD tokenizer (BEiT v2; paper Sec. 5 / App. B): codebook lookup by cosine, the norm-EMA
update against its formula on a hand-made example, straight-through gradients, k-means
initialisation, dead-code restart, health statistics, and the tokenizer's loss by hand."""

from __future__ import annotations

import math

import pytest
import timm
import torch
import torch.nn.functional as F

from maskdistill.distill.codebook import (
    CodebookOptions,
    EMACodebook,
    codebook_stats,
    spherical_kmeans,
    straight_through,
)
from maskdistill.distill.tokenizer import VQKD, VQKDConfig
from maskdistill.distill.tokenizer_build import build_vqkd
from maskdistill.models.teacher import Teacher


def unit(*v: float) -> list:
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def codebook(embed: list, decay: float = 0.5, sizes: list | None = None, threshold: float = 0.0) -> EMACodebook:
    """A codebook with given codes, already initialised (no k-means), in training mode."""
    cb = EMACodebook(len(embed), len(embed[0]), CodebookOptions(decay=decay, dead_threshold=threshold))
    cb.embed.copy_(torch.tensor(embed))
    cb.cluster_size.copy_(torch.tensor(sizes if sizes is not None else [4.0] * len(embed)))
    cb.initted.fill_(True)
    return cb.train()


# ------------------------------------------------------------------ lookup
def test_codes_are_the_nearest_by_cosine() -> None:
    cb = codebook([unit(1, 0), unit(0, 1), unit(-1, -1)]).eval()
    # Lengths do not matter, directions do: (3, 0.5) is 9 deg from e0; (0.1, 2) is long and points
    # at e1; (-1, -0.2) is 34 deg from e2 and 169 deg from e0; (5, 5.5) is 42 deg from e1, 48 from e0.
    z = torch.tensor([[3.0, 0.5], [0.1, 2.0], [-1.0, -0.2], [5.0, 5.5]])
    q, idx, _ = cb(z)
    assert idx.tolist() == [0, 1, 2, 1]
    assert torch.allclose(q, cb.embed[torch.tensor([0, 1, 2, 1])])
    # Brute force on random data: argmax of the cosine, and q is the (unit) code itself.
    g = torch.Generator().manual_seed(0)
    cb = EMACodebook(16, 8).eval()
    z = torch.randn(4, 10, 8, generator=g) * torch.rand(4, 10, 1, generator=g) * 10
    q, idx, _ = cb(z)
    cos = F.normalize(z, dim=-1) @ cb.embed.T  # (4, 10, 16)
    assert torch.equal(idx, cos.argmax(-1))
    assert torch.allclose(q, cb.embed[idx], atol=1e-6)
    assert torch.allclose(q.norm(dim=-1), torch.ones(4, 10), atol=1e-5)


# ------------------------------------------------------------------ EMA update
def test_ema_update_equals_the_norm_ema_formula_on_a_hand_made_example() -> None:
    e = [unit(1, 0), unit(0, 1), unit(-1, 0)]
    cb = codebook(e, decay=0.5, sizes=[4.0, 4.0, 4.0])
    z = torch.tensor([[2.0, 1.0], [1.0, -1.0], [1.0, 3.0]])  # -> e0, e0, e1; e2 unused
    _, idx, _ = cb(z)
    assert idx.tolist() == [0, 0, 1]
    # By hand: normalised inputs, their mean per code, normalised; then l2norm(0.5 e + 0.5 m).
    z1, z2, z3 = unit(2, 1), unit(1, -1), unit(1, 3)
    m0 = unit((z1[0] + z2[0]) / 2, (z1[1] + z2[1]) / 2)
    e0 = unit(0.5 * 1 + 0.5 * m0[0], 0.5 * 0 + 0.5 * m0[1])
    e1 = unit(0.5 * 0 + 0.5 * z3[0], 0.5 * 1 + 0.5 * z3[1])
    expected = torch.tensor([e0, e1, unit(-1, 0)])  # e2 received nothing: unchanged
    assert torch.allclose(cb.embed, expected, atol=1e-6), (cb.embed, expected)
    # N_k <- 0.5 N_k + 0.5 n_k with n = (2, 1, 0).
    assert torch.allclose(cb.cluster_size, torch.tensor([3.0, 2.5, 2.0]))
    assert cb.window_counts.tolist() == [2.0, 1.0, 0.0]
    assert not cb.embed.requires_grad and not list(cb.parameters())  # codes are never trained by gradients


def test_eval_mode_never_updates_the_codebook() -> None:
    cb = codebook([unit(1, 0), unit(0, 1)]).eval()
    before = cb.embed.clone(), cb.cluster_size.clone()
    cb(torch.randn(20, 2))
    assert torch.equal(cb.embed, before[0]) and torch.equal(cb.cluster_size, before[1])
    assert cb.window_counts.sum() == 0


# ------------------------------------------------------------------ straight-through
def test_straight_through_passes_the_gradient_unchanged() -> None:
    z = torch.randn(5, 3, requires_grad=True)
    q = torch.randn(5, 3, requires_grad=True)
    out = straight_through(z, q)
    assert torch.allclose(out, q, atol=1e-6)  # the value of the code
    w = torch.randn(5, 3)
    (out * w).sum().backward()
    assert torch.equal(z.grad, w)  # identity Jacobian: the upstream gradient, bit for bit
    assert q.grad is None


def test_quantiser_is_transparent_to_the_gradient() -> None:
    # d/dz <w, quantise(z)> equals d/dz <w, l2norm(z)>: the straight-through estimator skips the
    # (non-differentiable) lookup, only the normalisation in front of it shapes the gradient.
    cb = EMACodebook(8, 4, CodebookOptions(commitment=0.0)).eval()
    z = torch.randn(6, 4, requires_grad=True)
    w = torch.randn(6, 4)
    q, _, _ = cb(z)
    (g_q,) = torch.autograd.grad((q * w).sum(), z)
    (g_ref,) = torch.autograd.grad((F.normalize(z, dim=-1) * w).sum(), z)
    assert torch.allclose(g_q, g_ref, atol=1e-6)


def test_commitment_loss_is_mse_to_the_detached_code() -> None:
    cb = EMACodebook(8, 4, CodebookOptions(commitment=0.25)).eval()
    z = torch.randn(6, 4, requires_grad=True)
    q, idx, loss = cb(z)
    zn = F.normalize(z.detach(), dim=-1)
    assert loss.item() == pytest.approx(0.25 * ((zn - cb.embed[idx]) ** 2).mean().item(), rel=1e-5)
    loss.backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


# ------------------------------------------------------------------ init and restart
def test_kmeans_initialisation_finds_the_clusters_of_the_first_batch() -> None:
    g = torch.Generator().manual_seed(1)
    centres = F.normalize(torch.randn(4, 6, generator=g), dim=1)
    z = (centres.repeat_interleave(50, 0) + 0.02 * torch.randn(200, 6, generator=g))[torch.randperm(200, generator=g)]
    torch.manual_seed(0)
    cb = EMACodebook(4, 6, CodebookOptions(decay=0.99, kmeans_iters=10)).train()
    assert not bool(cb.initted)
    _, idx, _ = cb(z)
    assert bool(cb.initted)
    sim = centres @ cb.embed.T  # every true centre has a code within a few degrees
    assert sim.max(1).values.min() > 0.99, sim
    assert sorted(torch.bincount(idx, minlength=4).tolist()) == [50, 50, 50, 50]
    # Plain function: k rows asked of fewer points repeats rows (the extras stay empty).
    c, counts = spherical_kmeans(F.normalize(torch.randn(3, 6), dim=1), 5, iters=2)
    assert c.shape == (5, 6) and counts.sum() == 3


def test_dead_code_restart_replaces_unused_codes_with_encoder_outputs() -> None:
    e = [unit(1, 0), unit(0, 1), unit(-1, 0), unit(0, -1)]
    cb = codebook(e, decay=0.9, sizes=[10.0, 10.0, 1.05, 0.5], threshold=1.0)
    z = torch.tensor([[1.0, 0.1], [0.9, -0.1], [0.1, 1.0], [0.2, 0.8]] * 5)  # only e0, e1 used
    zn = F.normalize(z, dim=1)
    torch.manual_seed(0)
    cb(z)
    # e3 was already under the threshold, e2 falls under it now (0.9 * 1.05 = 0.945): both restart.
    assert int(cb.restarts) == 2
    for k in (2, 3):
        assert (zn @ cb.embed[k]).max() > 1 - 1e-6, "a restarted code is one of the batch's encoder outputs"
        assert cb.cluster_size[k].item() == pytest.approx(20 / 4)  # grace: the average usage
    # Live codes moved by EMA only, towards their tokens (no restart).
    assert (cb.embed[0] @ torch.tensor(unit(1, 0))).item() > 0.99
    assert cb.cluster_size[0].item() == pytest.approx(0.9 * 10 + 0.1 * 10)
    # A collapse report marks codes unused since the last report; the next step restarts them.
    cb.reset_window()
    cb(torch.tensor([[1.0, 0.05]] * 8))  # everything goes to e0
    assert cb.mark_unused_dead() == 3
    before = cb.embed.clone()
    cb(torch.tensor([[0.3, 1.0], [1.0, 0.0], [-1.0, -0.3], [0.1, -1.0]] * 2))
    assert int(cb.restarts) == 5
    assert not torch.equal(cb.embed[1:], before[1:])


def test_health_statistics_by_hand() -> None:
    s = codebook_stats(torch.tensor([4.0, 4.0, 0.0, 0.0]), torch.tensor([3.0, 2.0, 0.5, 0.0]), dead_threshold=1.0)
    assert s["usage"] == 0.5 and s["perplexity"] == pytest.approx(2.0) and s["dead_codes"] == 2 and s["tokens"] == 8
    s = codebook_stats(torch.tensor([1.0, 3.0]), torch.tensor([5.0, 5.0]), dead_threshold=1.0)
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert s["perplexity"] == pytest.approx(math.exp(h)) and s["usage"] == 1.0 and s["dead_codes"] == 0
    assert codebook_stats(torch.full((8,), 3.0), torch.ones(8), 1.0)["perplexity"] == pytest.approx(8.0)


# ------------------------------------------------------------------ the tokenizer
def tiny_tokenizer(num_codes: int = 16, commitment: float = 1.0) -> VQKD:
    torch.manual_seed(0)
    bb = timm.create_model(
        "vit_small_patch16_224", img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, num_classes=0
    )
    teacher = Teacher(bb, (0.5,) * 3, (0.25,) * 3, name="tiny")
    cfg = VQKDConfig(
        arch="vit_small_patch16_224",
        kwargs=dict(patch_size=8, embed_dim=32, depth=1, num_heads=2),
        num_codes=num_codes,
        code_dim=8,
        commitment=commitment,
    )
    return build_vqkd(cfg, 32, teacher.dim, teacher)


def test_tokenizer_loss_is_cosine_reconstruction_plus_commitment_by_hand() -> None:
    tok = tiny_tokenizer(commitment=0.5).eval()
    x = torch.rand(3, 3, 32, 32)
    out = tok(x)
    z = F.normalize(tok.encode(x), dim=-1)  # (B, N, d)
    idx = (z @ tok.codebook.embed.T).argmax(-1)
    q = tok.codebook.embed[idx]
    rec = tok.decode_head(tok.decoder.forward_features(q.transpose(1, 2).reshape(3, 8, 4, 4)))
    t = tok.teacher(x)
    ref_rec = 1 - F.cosine_similarity(rec, t, dim=-1).mean()
    ref = ref_rec + 0.5 * ((z - q) ** 2).mean()
    assert out["loss"].item() == pytest.approx(ref.item(), rel=1e-5)
    assert out["rec_loss"].item() == pytest.approx(ref_rec.item(), rel=1e-5)
    assert tok.reconstruction_cosine(x) == pytest.approx(1 - ref_rec.item(), rel=1e-5)
    assert torch.equal(tok.codes(x), idx)


def test_tokenizer_training_step_trains_encoder_through_the_codes_and_never_the_teacher() -> None:
    tok = tiny_tokenizer().train()
    assert not tok.teacher.training and not any(p.requires_grad for p in tok.teacher.parameters())
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    tok(x)["loss"].backward()
    assert bool(tok.codebook.initted)  # k-means on the first training batch
    assert tok.encoder.patch_embed.proj.weight.grad.abs().sum() > 0  # straight-through reached the encoder
    assert tok.decoder.patch_embed.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in tok.teacher.parameters())
    state = tok.state_dict()
    assert "codebook.embed" in state and "codebook.window_counts" not in state
