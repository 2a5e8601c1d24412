"""Training the VQ-KD tokenizer (BEiT v2; paper Sec. 5 / App. B, Table 1 "VQ-KD") with the shared
loop: the preset is Table 1's column; on built-in data a small codebook is mostly used and the
reconstruction beats a random codebook's; codebook health is logged every epoch; a collapse warns
with the step and the unused codes are restarted; checkpoints load back for code extraction; and
the ``maskdistill tokenizer train`` command with its run-directory rules."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Iterator

import pytest
import torch
import torch.nn.functional as F

from helpers.tokenizer import TINY_CODEBOOK
from maskdistill.config import ConfigError, load_config
from maskdistill.data.synthetic import ShapesTextures
from maskdistill.data.transforms import eval_transform
from maskdistill.distill.tokenizer_build import build_tokenizer, load_tokenizer
from maskdistill.runs.checkpoint import find_checkpoint, read_meta
from maskdistill.runs.metrics import read_metrics
from maskdistill.train.callbacks import LoopState
from maskdistill.train.vqkd import CodebookHealth, TokenizerConfig, train_tokenizer

# 512 built-in images of 32 px, batch 32 -> 16 steps per epoch; 4x4 patch grid; 32 codes of dim 8.
# EMA decay 0.9 (BEiT v2: 0.99 over 250k steps): a run of 100 steps needs a faster codebook.
TINY = [
    "data.builtin_images=512",
    "data.img_size=32",
    "data.builtin_image_size=32",
    "data.min_scale=0.5",
    "data.num_workers=0",
    "train.device=cpu",
    "tokenizer.kwargs={patch_size: 8, embed_dim: 32, depth: 2, num_heads: 2}",
    *TINY_CODEBOOK,
    "teacher.spec=pixels",
]


def cfg_of(*extra: str) -> TokenizerConfig:
    return load_config("demo", TINY + list(extra), schema=TokenizerConfig, kind="tokenizer")


def test_preset_is_table1_vqkd_column() -> None:
    c = load_config("vqkd_b16_clip", schema=TokenizerConfig, kind="tokenizer")
    t = c.tokenizer
    assert (t.num_codes, t.code_dim, t.decoder_depth, t.arch) == (8192, 32, 1, "vit_base_patch16_224")
    assert (c.train.epochs, c.train.batch_size) == (100, 512)
    o = c.optim
    assert (tuple(o.betas), o.lr, o.min_lr, o.warmup_epochs, o.weight_decay, o.clip_grad) == (
        (0.9, 0.99),
        2e-4,
        1e-5,
        5,
        1e-4,
        None,
    )
    assert (c.data.hflip, c.data.min_scale, c.data.color_jitter, c.data.img_size) == (0.5, 0.08, 0.0, 224)
    assert c.teacher.spec == "timm:vit_base_patch16_clip_224.openai" and c.teacher.projection
    # The encoder it names is 12 layers at width 768 with patch 16; the decoder 1 layer at 768.
    tok = build_tokenizer(
        t, load_config("vqkd_b16_clip", ["teacher.spec=pixels"], schema=TokenizerConfig, kind="tokenizer").teacher, 224
    )
    assert len(tok.encoder.blocks) == 12 and tok.encoder.embed_dim == 768 and tok.grid == (14, 14)
    assert tok.encoder.blocks[0].mlp.fc1.out_features == 3072 and tok.encoder.blocks[0].attn.num_heads == 12
    assert len(tok.decoder.blocks) == 1 and tok.decoder.embed_dim == 768
    assert tuple(tok.codebook.embed.shape) == (8192, 32)
    # The defaults are the same column: the preset only spells them out.
    d = TokenizerConfig()
    assert (d.optim.lr, d.train.epochs, d.data.min_scale, d.tokenizer.num_codes) == (2e-4, 100, 0.08, 8192)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Iterator[Dict[str, object]]:
    """A tokenizer of the pixel teacher trained for 6 epochs (96 steps)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a module fixture runs before the function-scoped one_thread
    out = tmp_path_factory.mktemp("tokenizer")
    summary = train_tokenizer(cfg_of("train.epochs=6"), out)
    torch.set_num_threads(threads)
    yield {"out": out, "summary": summary}


def held_out(n: int = 128) -> torch.Tensor:
    data = ShapesTextures(n, 32, 0, "test", transform=eval_transform(32))
    return torch.stack([data[i][0] for i in range(n)]).float() / 255


def test_trained_tokenizer_uses_most_codes_and_beats_a_random_codebook(trained: Dict[str, object]) -> None:
    s = trained["summary"]
    assert s["step"] == 96
    assert s["codebook_usage"] > 0.5, s  # share of the 32 codes used during the last epoch
    assert 4 < s["codebook_perplexity"] <= 32
    # Reload (no teacher: code extraction only), put the pixel teacher back for the metric.
    tok, info = load_tokenizer(trained["out"])
    full = build_tokenizer(cfg_of().tokenizer, cfg_of().teacher, 32)
    full.load_state_dict(tok.state_dict(), strict=False)
    full.eval()
    x = held_out()
    assert torch.equal(full.codes(x), tok.codes(x))
    good = full.reconstruction_cosine(x)
    full.codebook.embed.copy_(F.normalize(torch.randn(32, 8, generator=torch.Generator().manual_seed(0)), dim=1))
    random_codes = full.reconstruction_cosine(x)
    print("reconstruction cosine: trained", good, "random codebook", random_codes)
    assert good > random_codes + 0.08, (good, random_codes)
    assert info["teacher"] == "pixels" and info["num_codes"] == 32 and info["grid"] == [4, 4]


def test_codebook_health_is_logged_every_epoch(trained: Dict[str, object]) -> None:
    out = Path(trained["out"])
    rows = read_metrics(out / "metrics_codebook.csv")
    assert [r["step"] for r in rows] == [16, 32, 48, 64, 80, 96]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
    for r in rows:
        assert set(r) >= {"usage", "perplexity", "dead_codes", "restarts", "rec_cosine", "tokens"}
        assert 0 < r["usage"] <= 1 and 1 <= r["perplexity"] <= 32 and r["tokens"] == 16 * 32 * 16
    assert rows[-1]["rec_cosine"] > rows[0]["rec_cosine"]  # it learns
    assert (out / "tb" / "metrics_codebook").is_dir()
    meta = read_meta(find_checkpoint(out))
    assert meta["kind"] == "tokenizer" and meta["tokenizer"]["target_dim"] == 8 * 8 * 3


def test_collapse_warns_with_the_step_and_restarts_unused_codes(
    trained: Dict[str, object], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = cfg_of()
    torch.manual_seed(0)
    tok = build_tokenizer(cfg.tokenizer, cfg.teacher, 32).train()
    x = held_out(32)
    tok(x)  # k-means init and a first update
    cb = tok.codebook
    cb.reset_window()
    cb.window_counts[3] = 500.0  # an epoch in which a single code took every token
    state = LoopState(tok, 7, 1.0, tmp_path, torch.device("cpu"), _fixed_batch=lambda: {"image": (x * 255).byte()})
    with caplog.at_level(logging.WARNING, logger="maskdistill"):
        CodebookHealth(every=7, usage_warn=0.25, num_images=32).on_step_end(state)
    state.close()
    msgs = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(msgs) == 1 and "collapse at step 7" in msgs[0] and "restarting the 31 unused codes" in msgs[0], msgs
    row = read_metrics(tmp_path / "metrics_codebook.csv")[0]
    assert row["step"] == 7 and row["usage"] == pytest.approx(1 / 32) and row["perplexity"] == pytest.approx(1.0)
    # The restart acts at the next training step: every code but the busy one is replaced.
    before, restarts = cb.embed.clone(), int(cb.restarts)
    tok(x)
    assert int(cb.restarts) - restarts == 31
    changed = (cb.embed - before).norm(dim=1) > 1e-6
    assert changed.sum() >= 31
    # A healthy report warns not.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="maskdistill"):
        CodebookHealth(every=7, usage_warn=0.01).on_step_end(LoopState(tok, 8, 1.0, tmp_path, torch.device("cpu")))
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_bad_tokenizer_configs_are_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"dead_threshold=20.0 .* 16.00"):  # 32 x 16 tokens / 32 codes
        train_tokenizer(cfg_of("tokenizer.dead_threshold=20"), tmp_path / "a")
    with pytest.raises(ConfigError, match="prefix_tokens=false"):
        train_tokenizer(cfg_of("teacher.prefix_tokens=true"), tmp_path / "b")
    with pytest.raises(ConfigError, match="tokenizer.whitening"):
        train_tokenizer(cfg_of("tokenizer.whitening=batchnorm"), tmp_path / "c")
    assert not (tmp_path / "a").exists()  # nothing half-written


def test_cli_trains_refuses_an_existing_run_and_resumes(tmp_path: Path, restore_logging, capsys) -> None:
    from maskdistill.cli import main

    out = tmp_path / "tok"
    small = [*TINY, "data.builtin_images=64", "train.batch_size=16", "train.epochs=2", "health.fixed_images=0"]
    assert main(["tokenizer", "train", "demo", *small, "train.max_steps=3", "--out", str(out)]) == 0
    assert read_meta(find_checkpoint(out))["step"] == 3
    assert main(["tokenizer", "train", "demo", *small, "--out", str(out)]) == 2  # never clobbered
    assert "already holds a run" in capsys.readouterr().err
    assert main(["tokenizer", "train", "demo", *small, "train.batch_size=8", "--resume", "--out", str(out)]) == 2
    assert "train.batch_size" in capsys.readouterr().err  # a changed config lists the change
    assert main(["tokenizer", "train", "demo", *small, "--resume", "--out", str(out)]) == 0
    assert read_meta(find_checkpoint(out))["step"] == 8  # 4 steps per epoch, 2 epochs
    assert [r["step"] for r in read_metrics(out / "metrics.csv")] == list(range(1, 9))
    assert main(["tokenizer", "train", "demo", *small, "--overwrite", "--out", str(out)]) == 0
