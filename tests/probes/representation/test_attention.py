"""The registered attention and representation probes (paper Secs. 3-4): analytic values through
the whole pipeline (uniform attention over a 14 x 14 grid: 116.492 px for 16 px patches, entropy
log 196, NMI 0), streaming
results equal to a one-shot computation over all images at once, one shared forward pass for all
seven probes, attention maps kept only for the requested images, memory independent of the number of
images, and the probe-level options and errors."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from helpers.models import tiny_vit
from maskdistill.data.analysis_data import parse_data
from maskdistill.models.capture import capture
from maskdistill.models.spec import describe_model
from maskdistill.probes import get_probe
from maskdistill.probes.core.context import ProbeContext
from maskdistill.probes.representation import functional as F
from maskdistill.probes.representation.attention_accumulators import ATTENTION
from maskdistill.probes.representation.token_accumulators import FOURIER, IMAGE_SPECTRUM, TOKEN_SPECTRUM

SHARED = (
    "attention_distance",
    "attention_entropy",
    "attention_nmi",
    "attention_map",
    "feature_fourier",
    "token_singular_values",
    "image_singular_values",
)
DATA = "builtin:val?size=32"


# A 14 x 14 patch grid at 56 px, two blocks of two heads; peaked, image-dependent attention unless
# attention="uniform" (q = k = 0: every query attends uniformly).
grid14_vit = partial(tiny_vit, "grid14", attention="peaked", eval_mode=True)


def make_ctx(model: VisionTransformer, images: int, batch_size: int, **kw) -> ProbeContext:
    info = describe_model(model, "tiny", "tiny", overrides={"img_size": model.patch_embed.img_size[0]})
    return ProbeContext("tiny", model, info, parse_data(DATA), images=images, batch_size=batch_size, **kw)


def per_layer(res, metric: str) -> np.ndarray:
    t = res.table
    return t[t.metric == metric].sort_values("layer")["value"].to_numpy()


def per_head(res, metric: str, depth: int) -> np.ndarray:
    t = res.table[res.table.metric == metric].sort_values(["layer", "head"])
    return t["value"].to_numpy().reshape(depth, -1)


def test_uniform_attention_gives_the_analytic_values():
    ctx = make_ctx(grid14_vit(attention="uniform"), images=5, batch_size=2)  # batches 2, 2, 1
    dist = get_probe("attention_distance").fn(ctx)
    ent = get_probe("attention_entropy").fn(ctx)
    nmi = get_probe("attention_nmi").fn(ctx)
    # uniform over a 14x14 grid of 16 px patches -> 116.492 px; here P = 4 px.
    np.testing.assert_allclose(per_head(dist, "attention_distance", 2), 116.492 / 4, atol=2e-3)
    np.testing.assert_allclose(per_layer(dist, "attention_distance_layer_mean"), 116.492 / 4, atol=2e-3)
    np.testing.assert_allclose(per_head(ent, "attention_entropy", 2), math.log(196), atol=1e-5)
    np.testing.assert_allclose(per_head(ent, "attention_entropy_normalized", 2), 1.0, atol=1e-6)
    np.testing.assert_allclose(per_head(nmi, "attention_nmi", 2), 0.0, atol=1e-5)
    assert dist.meta["images"] == 5 and dist.meta["grid"] == [14, 14] and dist.meta["patch_size"] == 4
    assert dist.meta["max_distance"] == pytest.approx(4 * 13 * math.sqrt(2))
    maps = get_probe("attention_map").fn(ctx)
    assert maps.arrays["maps"].shape == (4, 2, 2, 3, 14, 14)  # images, layers {1, 2}, heads, queries, grid
    np.testing.assert_allclose(maps.arrays["maps"], 1 / 196, rtol=1e-5)
    w = maps.table[maps.table.metric == "weight_at_query"]["value"]
    np.testing.assert_allclose(w, 1 / 196, rtol=1e-5)


def _one_shot(model: VisionTransformer, ctx: ProbeContext):
    """All analysed images in one batch, statistics straight from the pure functions."""
    x = torch.stack([ctx.dataset()[i][0] for i in range(len(ctx.dataset()))])  # (n, 3, S, S)
    with capture(model) as cap, torch.no_grad():
        model(x)
    attn = [F.drop_prefix(a, 1).double() for a in cap.attention]  # (n, H, N, N) per block
    toks = [t[:, 1:].double() for t in cap.tokens]  # (n, N, C) per layer
    return attn, toks


def test_streaming_equals_one_shot_over_all_images():
    model = grid14_vit(seed=1)
    ctx = make_ctx(model, images=7, batch_size=3)  # uneven batches: 3, 3, 1
    res = {p: get_probe(p).fn(ctx) for p in SHARED if p != "attention_map"}
    attn, toks = _one_shot(model, ctx)
    for layer, a in enumerate(attn):
        ent = F.attention_entropy(a).mean(0)  # (H,)
        np.testing.assert_allclose(
            per_head(res["attention_distance"], "attention_distance", 2)[layer],
            F.attention_distance(a, 14, 4).mean(0),
            rtol=1e-5,
        )
        np.testing.assert_allclose(per_head(res["attention_entropy"], "attention_entropy", 2)[layer], ent, rtol=1e-5)
        np.testing.assert_allclose(
            per_head(res["attention_nmi"], "attention_nmi", 2)[layer], F.attention_nmi(a).mean(0), rtol=1e-4, atol=1e-6
        )
    # the attention is not trivial: heads differ from uniform
    assert per_head(res["attention_entropy"], "attention_entropy", 2).min() < math.log(196) - 0.5
    fourier = res["feature_fourier"].arrays["relative_log_amplitude"]
    tok = res["token_singular_values"].arrays["relative_log_singular_value"]
    img = res["image_singular_values"].arrays["relative_log_singular_value"]
    # depth + 1 layers; K = ceil(14 / 2), min(N - 1, C), n - 1
    assert fourier.shape == (3, 7) and tok.shape == (3, 16) and img.shape == (3, 6)
    for layer, t in enumerate(toks):
        np.testing.assert_allclose(fourier[layer], F.fourier_relative_log_amplitude(t, 14).numpy(), atol=1e-5)
        np.testing.assert_allclose(tok[layer], F.token_singular_spectrum(t).numpy(), atol=1e-8)
        np.testing.assert_allclose(img[layer], F.singular_spectrum(t.mean(1)).numpy(), atol=1e-6)
    np.testing.assert_allclose(per_layer(res["token_singular_values"], "mean_relative_log_singular_value"), tok.mean(1))
    np.testing.assert_allclose(per_layer(res["feature_fourier"], "high_freq_relative_log_amplitude"), fourier[:, -1])
    assert (res["token_singular_values"].table.layer.unique() == [0, 1, 2]).all()
    assert sorted(res["attention_nmi"].table.layer.unique()) == [1, 2]


def _count_forwards(model):
    calls = []
    h = model.register_forward_pre_hook(lambda m, a: calls.append(a[0].shape[0]))
    return calls, h


def test_one_shared_pass_serves_all_seven_probes():
    model = grid14_vit(seed=2)
    ctx = make_ctx(model, images=5, batch_size=2, wanted=set(SHARED))
    calls, h = _count_forwards(model)
    try:
        results = {p: get_probe(p).fn(ctx) for p in SHARED}
        assert calls == [2, 2, 1]  # one pass over 5 images, whatever the number of probes
        custom = get_probe("attention_map").fn(ctx, images=[1], layers=[2], queries=[(0, 0)])
        assert calls == [2, 2, 1, 2]  # maps for other choices: a short pass that stops after image 1
    finally:
        h.remove()
    assert custom.arrays["maps"].shape == (1, 1, 2, 1, 14, 14)
    assert list(custom.arrays["layers"]) == [2] and custom.meta["images_kept"] == [1]
    # the custom map of image 1 equals the one the shared pass kept for the same block and query
    shared = results["attention_map"]
    assert list(shared.arrays["layers"]) == [1, 2] and shared.arrays["queries"].tolist() == [[3, 3], [7, 7], [10, 10]]
    # maps are the renormalised attention rows: each sums to 1
    np.testing.assert_allclose(shared.arrays["maps"].sum((-1, -2)), 1.0, atol=1e-5)
    ctx2 = make_ctx(model, images=5, batch_size=2)
    one = get_probe("attention_map").fn(ctx2, images=[1], layers=[2], queries=[(3, 3)])
    np.testing.assert_allclose(one.arrays["maps"][0, 0, :, 0], shared.arrays["maps"][1, 1, :, 0], atol=1e-6)
    # the map images are the transformed inputs, as uint8
    assert shared.arrays["images"].shape == (4, 56, 56, 3) and shared.arrays["images"].dtype == np.uint8


def test_a_probe_asked_later_runs_only_what_is_missing():
    model = grid14_vit(seed=3)
    ctx = make_ctx(model, images=3, batch_size=3, wanted={"attention_distance"})
    calls, h = _count_forwards(model)
    try:
        get_probe("attention_distance").fn(ctx)
        get_probe("attention_nmi").fn(ctx)
        assert calls == [3]
        get_probe("feature_fourier").fn(ctx)
        assert calls == [3, 3]
        assert ctx.memo["shared"].groups == {"attention", "fourier"}
    finally:
        h.remove()


def _kept_bytes(stats) -> int:
    """The running state of the pass: sums, scatter matrices, kept maps and pictures."""
    att = stats.group(ATTENTION)
    curves = (stats.group(FOURIER).sums, stats.group(TOKEN_SPECTRUM).sums)
    tensors = (att.distance, att.entropy, att.nmi) + curves
    n = sum(t.numel() * t.element_size() for t in tensors if t is not None)
    n += sum(a.m2.numel() * 8 + a.mean.numel() * 8 for a in stats.group(IMAGE_SPECTRUM).layers)
    return n + sum(v.nbytes for v in att.maps.values.values()) + sum(v.nbytes for v in stats.kept_images.values())


def _per_image_bytes(stats) -> int:
    """The per-image values the intervals resample: a few float32 numbers per image and layer."""
    att = stats.group(ATTENTION)
    arrays = list(att.per_image.values()) + [stats.group(FOURIER).per_image, stats.group(TOKEN_SPECTRUM).per_image]
    return sum(a.nbytes for a in arrays) + stats.group(IMAGE_SPECTRUM).pooled.nbytes


def test_kept_state_does_not_grow_with_the_number_of_images():
    model = grid14_vit(seed=4)
    sizes, per_image = [], []
    for n in (6, 18):
        ctx = make_ctx(model, images=n, batch_size=6)
        get_probe("image_singular_values").fn(ctx)  # first call computes every group (wanted=None)
        stats = ctx.memo["shared"]
        kept_maps = stats.group(ATTENTION).maps.values
        assert stats.n_images == n and len(kept_maps) == 4 * 2  # 4 images x 2 blocks, never more
        sizes.append(_kept_bytes(stats))
        per_image.append(_per_image_bytes(stats))
        depth, heads, width = stats.depth, stats.group(ATTENTION).heads, model.embed_dim
        # per image: 3 attention statistics per (block, head), 2 curve scalars and the pooled tokens per token layer
        assert per_image[-1] == 4 * n * (3 * depth * heads + 2 * (depth + 1) + (depth + 1) * width)
    assert sizes[0] == sizes[1]


def test_of_features_is_half_of_covariance():
    ctx = make_ctx(grid14_vit(seed=5), images=4, batch_size=4)
    for p in ("token_singular_values", "image_singular_values"):
        cov, feat = get_probe(p).fn(ctx), get_probe(p).fn(ctx, of="features")
        np.testing.assert_allclose(
            cov.arrays["relative_log_singular_value"], 2 * feat.arrays["relative_log_singular_value"], rtol=1e-12
        )
        assert cov.meta["of"] == "covariance" and feat.meta["of"] == "features"
        with pytest.raises(ValueError, match="of='eigen'"):
            get_probe(p).fn(ctx, of="eigen")


def test_bad_map_requests_say_what_is_wrong():
    ctx = make_ctx(grid14_vit(seed=6), images=2, batch_size=2)
    with pytest.raises(ValueError, match="beyond the 2 analysed images"):
        get_probe("attention_map").fn(ctx, images=[5])  # first probe: the shared pass keeps these maps
    get_probe("attention_distance").fn(ctx)
    with pytest.raises(ValueError, match="beyond the 2 analysed images"):
        get_probe("attention_map").fn(ctx, images=[0, 3])  # after it: a maps-only pass
    with pytest.raises(ValueError, match="outside the 14x14"):
        get_probe("attention_map").fn(ctx, queries=[(14, 0)])
    with pytest.raises(ValueError, match="blocks 0..1"):
        get_probe("attention_map").fn(ctx, layers=[3])


def test_image_size_comes_from_the_patch_embedding():
    """A model built for 56 px whose pretrained_cfg says 224 px is fed 56 px images, and says so."""
    model = grid14_vit(seed=7)
    info = describe_model(model, "tiny", "tiny")  # pretrained_cfg default: 224
    assert info.img_size == 224
    ctx = ProbeContext("tiny", model, info, parse_data(DATA), images=2, batch_size=2)
    assert ctx.img_size == 56 and "224" in ctx.meta()["img_size_note"]
    x, _ = next(ctx.batches())
    assert x.shape == (2, 3, 56, 56) and x.dtype == torch.float32
    res = get_probe("attention_distance").fn(ctx)
    assert res.meta["img_size"] == 56 and res.meta["grid"] == [14, 14]


def test_fused_attention_sums_equal_the_reference_functions():
    """The pass reduces without a renormalised copy; it must give functional's numbers exactly, also
    for rows whose whole mass sits on the prefix (zero rows after drop_prefix) and exact zeros."""
    from maskdistill.probes.representation.attention_stats import attention_sums

    torch.manual_seed(0)
    attn = (torch.randn(3, 2, 17, 17) * 3).softmax(-1)  # 1 prefix + 4x4 patches
    attn[0, 0, 5] = 0.0
    attn[0, 0, 5, 0] = 1.0  # query 4 attends only to CLS
    attn[1, 1, 2, 3:9] = 0.0  # exact zeros
    attn[1, 1, 2] /= attn[1, 1, 2].sum()
    attn[2, 0] = torch.eye(17)  # identity: NMI 1, entropy 0, distance 0
    ref = F.drop_prefix(attn, 1)
    dist, ent, nmi = attention_sums(attn, 1, F.patch_distances(4, 16))
    np.testing.assert_allclose(dist, F.attention_distance(ref, 4, 16), rtol=1e-5)
    np.testing.assert_allclose(ent, F.attention_entropy(ref), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(nmi, F.attention_nmi(ref), rtol=1e-4, atol=1e-6)
    assert dist[2, 0] == 0 and abs(ent[2, 0]) < 1e-6 and nmi[2, 0] == pytest.approx(1.0, abs=1e-6)
    d16, e16, n16 = attention_sums(attn.bfloat16(), 1, F.patch_distances(4, 16))  # statistics in float32
    assert d16.dtype == torch.float32
    np.testing.assert_allclose(d16, F.attention_distance(F.drop_prefix(attn.bfloat16(), 1), 4, 16), rtol=1e-5)
