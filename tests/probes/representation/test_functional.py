"""Analytic checks of the attention statistics and feature spectra (paper Secs. 3-4: uniform,
identity, block and neighbour attention; known spectra) on the pure functions of
``maskdistill.probes.representation.functional`` -- plus the streaming forms (per-image
curves, the merged image-level covariance) against the one-shot ones."""

from __future__ import annotations

import math

import pytest
import torch

from maskdistill.probes.representation.functional import (
    SpectrumAccumulator,
    attention_distance,
    attention_entropy,
    attention_map,
    attention_nmi,
    drop_prefix,
    fourier_log_amplitude_diagonal,
    fourier_relative_log_amplitude,
    global_average_pool,
    image_singular_spectrum,
    patch_distances,
    singular_spectrum,
    token_singular_spectrum,
)

L, P = 14, 16
N = L * L


def uniform(n: int = N) -> torch.Tensor:
    return torch.full((1, 1, n, n), 1.0 / n)


def identity(n: int = N) -> torch.Tensor:
    return torch.eye(n)[None, None]


def block_uniform(m: int, n: int = N) -> torch.Tensor:
    """Queries in group g attend uniformly to the m keys of group g (n / m groups)."""
    g = torch.arange(n) // m
    return ((g[:, None] == g[None]).float() / m)[None, None]


def right_neighbour() -> torch.Tensor:
    """Every patch attends to its right neighbour; the last column attends to itself."""
    a = torch.zeros(N, N)
    for q in range(N):
        a[q, q + 1 if q % L < L - 1 else q] = 1
    return a[None, None]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------ prefix, maps
def test_drop_prefix_renormalises_rows() -> None:
    g = gen()
    a = torch.rand(2, 3, 1 + 4 + N, 1 + 4 + N, generator=g).softmax(-1).bfloat16()  # CLS + 4 registers
    out = drop_prefix(a, 5)
    assert out.shape == (2, 3, N, N) and out.dtype == torch.float32
    torch.testing.assert_close(out.sum(-1), torch.ones(2, 3, N))
    kept = a[..., 5:, 5:].float()
    torch.testing.assert_close(out, kept / kept.sum(-1, keepdim=True))
    assert torch.equal(drop_prefix(identity(), 0), identity())


def test_drop_prefix_rows_all_on_the_prefix_stay_zero() -> None:
    a = torch.zeros(1, 1, 3, 3)
    a[0, 0, :, 0] = 1  # every query attends only to the CLS token
    a[0, 0, 2] = torch.tensor([0.5, 0.25, 0.25])
    out = drop_prefix(a, 1)
    assert torch.equal(out[0, 0], torch.tensor([[0.0, 0.0], [0.5, 0.5]]))
    with pytest.raises(ValueError, match="num_prefix"):
        drop_prefix(a, 3)
    with pytest.raises(ValueError, match=r"\(\.\.\., N, N\)"):
        drop_prefix(torch.zeros(2, 3, 4), 0)


def test_attention_map_identity_is_one_bright_cell_at_the_query() -> None:
    i, j = 3, 9  # column 3, row 9: token 9 * 14 + 3
    m = attention_map(identity(), (i, j), L)
    assert m.shape == (1, 1, L, L)
    expected = torch.zeros(L, L)
    expected[j, i] = 1
    assert torch.equal(m[0, 0], expected)
    with pytest.raises(ValueError, match="outside"):
        attention_map(identity(), (L, 0), L)


# ------------------------------------------------------------------------------------ distance
def test_patch_distances_are_pixels_in_row_major_order() -> None:
    d = patch_distances(L, P)
    assert d[0, 1] == P and d[0, L] == P  # right neighbour; the patch below
    assert d[0, L + 1] == pytest.approx(P * math.sqrt(2))
    assert d[L - 1, L] == pytest.approx(P * math.hypot(1, L - 1))  # end of row 0 -> start of row 1


def test_attention_distance_checks() -> None:
    assert attention_distance(identity(), L, P).item() == 0
    assert attention_distance(uniform(), L, P).item() == pytest.approx(116.492, abs=5e-4)
    assert attention_distance(right_neighbour(), L, P).item() == pytest.approx(16 * 13 / 14, abs=1e-4)
    assert attention_distance(right_neighbour(), (L, L), P).item() == pytest.approx(14.857, abs=5e-4)


def test_attention_distance_is_per_image_and_head() -> None:
    a = torch.cat([torch.cat([identity(), uniform()], 1), torch.cat([right_neighbour(), identity()], 1)])
    d = attention_distance(a.bfloat16(), L, P)  # bf16 in, float32 statistics out
    assert d.shape == (2, 2) and d.dtype == torch.float32
    torch.testing.assert_close(d, attention_distance(a.bfloat16().float(), L, P))
    # bf16 holds 1/196 to 0.1 %, hence the tolerance on the uniform head.
    torch.testing.assert_close(d, torch.tensor([[0.0, 116.492], [14.857, 0.0]]), atol=1e-3, rtol=2e-3)
    with pytest.raises(ValueError, match="grid"):
        attention_distance(uniform(N + 1), L, P)


# ------------------------------------------------------------------------------------ entropy
def test_attention_entropy_checks() -> None:
    assert attention_entropy(uniform()).item() == pytest.approx(math.log(196), abs=1e-5)
    assert attention_entropy(uniform()).item() == pytest.approx(5.2781, abs=1e-4)
    assert attention_entropy(uniform(), normalized=True).item() == pytest.approx(1.0, abs=1e-6)
    # 0 log 0 = 0 exactly: no epsilon, no NaN.
    assert attention_entropy(identity()).item() == 0
    one_hot = torch.zeros(1, 1, N, N)
    one_hot[..., 17] = 1
    assert attention_entropy(one_hot).item() == 0
    for m in (2, 4, 7, 49):
        assert attention_entropy(block_uniform(m)).item() == pytest.approx(math.log(m), abs=1e-5)
        assert attention_entropy(block_uniform(m), normalized=True).item() == pytest.approx(
            math.log(m) / math.log(N), abs=1e-6
        )


def test_attention_entropy_matches_the_definition_on_random_rows() -> None:
    a = torch.rand(2, 3, 10, 10, generator=gen(1), dtype=torch.float64).softmax(-1)
    expected = -(a * a.log()).sum(-1).mean(-1)
    torch.testing.assert_close(attention_entropy(a), expected)


# ------------------------------------------------------------------------------------ NMI
def test_attention_nmi_checks() -> None:
    assert attention_nmi(uniform()).item() == pytest.approx(0, abs=1e-6)
    peaked = torch.rand(N, generator=gen(2)).mul(8).softmax(-1)
    assert attention_nmi(peaked.expand(N, N)[None, None]).item() == pytest.approx(0, abs=1e-6)
    one_key = torch.zeros(1, 1, N, N)
    one_key[..., 5] = 1  # H(k) = 0: defined as 0, not NaN
    assert attention_nmi(one_key).item() == 0
    assert attention_nmi(identity()).item() == pytest.approx(1, abs=1e-6)
    perm = torch.eye(N)[torch.randperm(N, generator=gen(3))]
    assert attention_nmi(perm[None, None]).item() == pytest.approx(1, abs=1e-6)
    assert attention_nmi(block_uniform(N // 4)).item() == pytest.approx(math.log(4) / math.log(N), abs=1e-6)
    assert attention_nmi(block_uniform(N // 4)).item() == pytest.approx(0.2626, abs=1e-4)
    for groups in (2, 7, 28):
        assert attention_nmi(block_uniform(N // groups)).item() == pytest.approx(
            math.log(groups) / math.log(N), abs=1e-6
        )


def test_attention_nmi_uses_each_images_own_marginal() -> None:
    a = torch.cat([uniform(), identity(), block_uniform(N // 4)])  # three images, one head
    torch.testing.assert_close(
        attention_nmi(a), torch.tensor([[0.0], [1.0], [math.log(4) / math.log(N)]]), atol=1e-6, rtol=0
    )


def test_attention_nmi_matches_the_definition_on_random_rows() -> None:
    a = torch.rand(2, 3, 12, 12, generator=gen(4), dtype=torch.float64).mul(4).softmax(-1)
    n = a.shape[-1]
    pk = a.mean(-2, keepdim=True)  # (B, H, 1, N)
    mi = ((1 / n) * a * (a / pk).log()).sum((-2, -1))
    hk = -(pk * pk.log()).sum((-2, -1))
    torch.testing.assert_close(attention_nmi(a), mi / torch.sqrt(hk * math.log(n)))
    torch.testing.assert_close(attention_nmi(a, row_entropy=attention_entropy(a)), attention_nmi(a))


# ------------------------------------------------------------------------------------ Fourier
def cosine_tokens(side: int, k: int, a, b: float = 1.0, batch: int = 3) -> torch.Tensor:
    """x = a_c + b cos(2 pi k (r + c) / L) per channel c, as row-major tokens (B, L*L, C)."""
    r = torch.arange(side, dtype=torch.float64)[:, None]
    c = torch.arange(side, dtype=torch.float64)[None]
    wave = b * torch.cos(2 * math.pi * k * (r + c) / side)  # (L, L)
    a = torch.as_tensor(a, dtype=torch.float64)
    x = a[:, None, None] + wave  # (C, L, L)
    return x.flatten(1).T[None].expand(batch, -1, -1).contiguous()  # (B, N, C)


def test_fourier_relative_log_amplitude_check() -> None:
    curve = fourier_relative_log_amplitude(cosine_tokens(L, L // 2 - 1, [2.0]).float(), L)
    assert curve.shape == (7,) and curve[0] == 0
    assert curve[-1].item() == pytest.approx(-1.386294, abs=1e-5)
    assert curve[-1].item() == pytest.approx(math.log(1 / 2) - math.log(2), abs=1e-5)
    assert (curve[1:-1] < -10).all()  # nothing at the other diagonal frequencies (log 1e-6 floor)


def test_fourier_averages_logs_over_channels_and_handles_odd_grids() -> None:
    # Mean of logs over channels: log(b/2) - mean_c log a_c; a reshape that mixed channels would not give it.
    curve = fourier_relative_log_amplitude(cosine_tokens(L, 6, [2.0, 4.0]), L)
    assert curve[-1].item() == pytest.approx(math.log(0.5) - (math.log(2) + math.log(4)) / 2, abs=1e-6)
    odd = fourier_relative_log_amplitude(cosine_tokens(15, 7, [3.0]), 15)  # K = ceil(15/2) = 8
    assert odd.shape == (8,) and odd[-1].item() == pytest.approx(math.log(0.5) - math.log(3), abs=1e-6)


def test_fourier_per_image_curves_stream_to_the_same_curve() -> None:
    x = torch.randn(6, N, 8, generator=gen(5))
    per_image = fourier_log_amplitude_diagonal(x, L)  # (B, K)
    assert per_image.shape == (6, 7)
    total = per_image[:2].sum(0) + per_image[2:].sum(0)  # two batches, summed
    mean = total / 6
    torch.testing.assert_close(mean - mean[0], fourier_relative_log_amplitude(x, L))
    with pytest.raises(ValueError, match="prefix"):
        fourier_log_amplitude_diagonal(torch.randn(2, N + 1, 8), L)


# ------------------------------------------------------------------------------------ spectra
def test_isotropic_gaussian_gives_a_flat_spectrum() -> None:
    x = torch.randn(20000, 16, generator=gen(6), dtype=torch.float64)
    feats = singular_spectrum(x, of="features")
    assert feats.shape == (16,) and feats.dtype == torch.float64
    assert feats[0] == 0 and feats.min() > -0.1  # sqrt(n)(1 +- sqrt(C/n)): within ~6 %
    assert singular_spectrum(x).min() > -0.2


def test_rank_r_data_gives_exactly_r_values_above_noise() -> None:
    r = 5
    x = torch.randn(50, r, generator=gen(7), dtype=torch.float64) @ torch.randn(
        r, 16, generator=gen(8), dtype=torch.float64
    )
    for of in ("features", "covariance"):
        s = singular_spectrum(x + 3.0, of=of)  # a constant offset is removed by centring
        assert s.shape == (16,)
        assert (s[:r] > -10).all() and (s[r:] < -20).all() and torch.isfinite(s).all()
    tokens = torch.stack([x, 2 * x.flip(0)]).float()  # (2, 50, 16): token level, per image
    s = token_singular_spectrum(tokens, of="features", per_image=True)
    assert s.shape == (2, 16) and (s[:, :r] > -10).all() and (s[:, r:] < -8).all()


def test_scaling_leaves_the_spectrum_unchanged_and_covariance_doubles_features() -> None:
    x = torch.randn(40, 12, generator=gen(9), dtype=torch.float64) * torch.linspace(0.1, 3, 12, dtype=torch.float64)
    for of in ("features", "covariance"):
        for c in (1e-3, 7.0, 1e4):
            torch.testing.assert_close(singular_spectrum(c * x, of=of), singular_spectrum(x, of=of))
    torch.testing.assert_close(
        singular_spectrum(x, of="covariance"), 2 * singular_spectrum(x, of="features"), rtol=1e-12, atol=1e-12
    )


def test_covariance_convention_matches_an_svd_of_the_covariance() -> None:
    """Park et al.'s code: singular values of the centred covariance matrix."""
    x = torch.randn(30, 8, generator=gen(10), dtype=torch.float64) * torch.arange(1, 9, dtype=torch.float64)
    sv = torch.linalg.svdvals(torch.cov(x.T))
    torch.testing.assert_close(singular_spectrum(x), sv.log() - sv[0].log())


def test_rank_limit_keeps_min_n_minus_1_and_c() -> None:
    assert singular_spectrum(torch.randn(5, 16, generator=gen(11))).shape == (4,)
    assert token_singular_spectrum(torch.randn(3, 4, 16, generator=gen(12))).shape == (3,)
    assert image_singular_spectrum(torch.randn(40, 9, 16, generator=gen(13))).shape == (16,)
    with pytest.raises(ValueError, match="n >= 2"):
        singular_spectrum(torch.randn(1, 4))
    with pytest.raises(ValueError, match="covariance"):
        singular_spectrum(torch.randn(4, 4), of="eigen")


def test_token_and_image_level_follow_their_definitions() -> None:
    tokens = torch.randn(4, N, 24, generator=gen(14)).bfloat16()
    per_image = torch.stack([singular_spectrum(t) for t in tokens])  # each image's N tokens, centred over tokens
    torch.testing.assert_close(token_singular_spectrum(tokens, per_image=True), per_image)
    torch.testing.assert_close(token_singular_spectrum(tokens), per_image.mean(0))
    torch.testing.assert_close(
        image_singular_spectrum(tokens, of="features"), singular_spectrum(tokens.double().mean(1), of="features")
    )


def test_accumulated_image_spectrum_equals_the_one_shot_spectrum() -> None:
    # Features with a large common offset (as ViT channels have): the merged scatter matrix stays exact.
    tokens = torch.randn(90, 9, 12, generator=gen(15), dtype=torch.float64) * torch.linspace(
        0.2, 2, 12, dtype=torch.float64
    )
    tokens = tokens + 1e3
    acc = SpectrumAccumulator()
    for batch in tokens.split(32):  # 32 + 32 + 26 images
        acc.update(global_average_pool(batch))
    assert acc.n == 90
    for of in ("features", "covariance"):
        torch.testing.assert_close(acc.spectrum(of), image_singular_spectrum(tokens, of), atol=1e-8, rtol=1e-8)
    with pytest.raises(ValueError, match="at least 2"):
        SpectrumAccumulator().spectrum()
