"""``maskdistill convert``: state dicts in the key layouts of the official BEiT v2, FD, MILAN, dBOT and
EVA-02 releases (``helpers/official_checkpoints.py``, written from each project's model code) map
onto their timm architectures and load with ``strict=True``; every kept tensor lands unchanged in
the key the mapping names, the pre-training parts are listed as dropped, and a deliberately renamed
key stops the conversion naming it (or, with ``allow_unmapped``, is listed in the card)."""

from __future__ import annotations

import json

import pytest
import timm
import torch

from helpers.official_checkpoints import HEADS, OFFICIAL, fd_pretrain, milan_finetuned
from maskdistill.cli import main
from maskdistill.hub import ConvertError, convert_checkpoint, convert_state_dict

# official key -> timm key, per format: the renames that matter (everything else keeps its name).
RENAMED = {
    "beitv2": {
        "blocks.1.gamma_2": "blocks.1.gamma_2",
        "rel_pos_bias.relative_position_bias_table": "rel_pos_bias.relative_position_bias_table",
    },
    "fd": {
        "encoder.blocks.1.attn.q_bias": "blocks.1.attn.q_bias",
        "encoder.norm.weight": "norm.weight",
        "encoder.blocks.0.attn.relative_position_bias_table": "blocks.0.attn.relative_position_bias_table",
    },
    "milan": {"blocks.1.attn.qkv.bias": "blocks.1.attn.qkv.bias", "pos_embed": "pos_embed"},
    "dbot": {"blocks.0.mlp.fc2.weight": "blocks.0.mlp.fc2.weight", "norm.bias": "norm.bias"},
    "eva": {
        "blocks.0.mlp.w1.weight": "blocks.0.mlp.fc1_g.weight",
        "blocks.0.mlp.w2.bias": "blocks.0.mlp.fc1_x.bias",
        "blocks.1.mlp.ffn_ln.weight": "blocks.1.mlp.norm.weight",
        "blocks.1.mlp.w3.weight": "blocks.1.mlp.fc2.weight",
        "blocks.0.attn.q_bias": "blocks.0.attn.q_proj.bias",
        "blocks.0.attn.v_bias": "blocks.0.attn.v_proj.bias",
    },
}
ARCH = {"beitv2": "Beit", "fd": "Beit", "milan": "VisionTransformer", "dbot": "VisionTransformer", "eva": "Eva"}
DROPPED = {  # pre-training parts that must be listed as dropped
    "beitv2": (
        "mask_token",
        "lm_head.weight",
        "cls_pt_layers.0.attn.qkv.weight",
        "rel_pos_bias.relative_position_index",
    ),
    "fd": ("decoder.0.weight", "encoder.blocks.0.attn.k_bias", "encoder.blocks.1.attn.relative_position_index"),
    "milan": ("mask_token", "decoder_blocks.0.attn.kv.weight", "decoder_pred.weight"),
    "dbot": ("decoder_predp.weight", "decoder_blocks.0.attn.qkv.weight", "mask_token"),
    "eva": ("mask_token", "lm_head.weight", "rope.freqs_cos"),
}


@pytest.mark.parametrize("fmt", list(OFFICIAL))
def test_each_format_loads_strictly_with_every_tensor_in_place(fmt):
    build, kwargs = OFFICIAL[fmt]
    sd = build()
    model, conv = convert_state_dict(fmt, sd, kwargs=kwargs)
    assert type(model).__name__ == ARCH[fmt]
    own = model.state_dict()
    model.load_state_dict(own, strict=True)
    for src, dst in RENAMED[fmt].items():
        assert torch.equal(own[dst], sd[src]), (src, dst)
    assert set(DROPPED[fmt]) <= set(conv.dropped) and conv.unmapped == []
    # Nothing re-initialised: every tensor of the model is one of the checkpoint's, unchanged.
    kept = [v for k, v in sd.items() if k not in conv.dropped]
    assert len(own) == len(kept)
    for k, v in own.items():
        assert any(v.shape == w.shape and torch.equal(v, w) for w in kept), k
    x = torch.randn(2, 3, model.patch_embed.img_size[0], model.patch_embed.img_size[0])
    assert torch.isfinite(model(x)).all()


def test_inferred_architecture_follows_the_tensors():
    _, beit = convert_state_dict("beitv2", OFFICIAL["beitv2"][0]())
    assert beit.kwargs["use_shared_rel_pos_bias"] is True and beit.kwargs["init_values"] is not None
    assert (beit.kwargs["embed_dim"], beit.kwargs["depth"], beit.kwargs["num_heads"], beit.kwargs["img_size"]) == (
        32,
        2,
        HEADS,
        32,
    )
    assert beit.kwargs["use_abs_pos_emb"] is False and beit.kwargs["global_pool"] == "token"
    _, fd = convert_state_dict("fd", fd_pretrain())
    assert fd.kwargs["use_rel_pos_bias"] is True and fd.kwargs["use_shared_rel_pos_bias"] is False
    model, ft = convert_state_dict("milan", milan_finetuned(classes=5), kwargs={"num_heads": HEADS})
    assert ft.kwargs["num_classes"] == 5 and ft.kwargs["global_pool"] == "avg" and model.head.out_features == 5


def test_fd_key_bias_is_dropped_because_softmax_cancels_it():
    """q.(k + b) adds q.b to every logit of a query's row: the output does not change."""
    sd = fd_pretrain()
    model, _ = convert_state_dict("fd", sd)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        without = model.forward_features(x)
        for i, blk in enumerate(model.blocks):
            blk.attn.k_bias.copy_(sd[f"encoder.blocks.{i}.attn.k_bias"] * 50)
        with_bias = model.forward_features(x)
    assert torch.allclose(without, with_bias, atol=1e-5) and not torch.equal(without, with_bias)


@pytest.mark.parametrize("fmt", list(OFFICIAL))
def test_a_renamed_key_is_reported_not_dropped(fmt):
    build, kwargs = OFFICIAL[fmt]
    sd = build()
    src = next(iter(RENAMED[fmt]))
    renamed = src.replace("blocks.", "blokcs.") if "blocks." in src else src + "_renamed"
    sd[renamed] = sd.pop(src)
    with pytest.raises(ConvertError) as err:
        convert_state_dict(fmt, sd, kwargs=kwargs)
    text = str(err.value)
    # Keys are shown as timm's filter leaves them (FD's prefix stripped, EVA's MLP names mapped).
    shown = "blokcs." if "blokcs." in renamed else renamed
    assert "no place in the architecture" in text and shown in text
    assert "the checkpoint lacks" in text and RENAMED[fmt][src] in text


def test_extra_keys_are_listed_in_the_card_when_allowed(tmp_path):
    sd = OFFICIAL["beitv2"][0]()
    sd["extra_projection.weight"] = torch.zeros(3, 3)
    torch.save({"model": sd}, tmp_path / "beitv2.pth")
    with pytest.raises(ConvertError, match="extra_projection.weight"):
        convert_checkpoint("beitv2", tmp_path / "beitv2.pth", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    conv = convert_checkpoint("beitv2", tmp_path / "beitv2.pth", tmp_path / "out", allow_unmapped=True)
    assert conv.unmapped == ["extra_projection.weight"]
    card = (tmp_path / "out" / "README.md").read_text()
    assert "could not map and dropped (--allow-unmapped): extra_projection.weight" in card
    assert "dropped 2 key(s), the head predicting VQ-KD codes (pre-training only): lm_head.weight, lm_head.bias" in card


def test_the_command_offers_exactly_the_formats():
    from maskdistill.cli import convert as command
    from maskdistill.hub import FORMATS

    assert command.FORMATS == tuple(FORMATS)


def test_convert_command_writes_a_folder_timm_loads(tmp_path, capsys):
    sd = OFFICIAL["milan"][0]()
    torch.save({"model": sd}, tmp_path / "milan.pth")
    out = tmp_path / "milan-vit"
    assert (
        main(
            [
                "convert",
                "--format",
                "milan",
                str(tmp_path / "milan.pth"),
                "--out",
                str(out),
                "--kwarg",
                f"num_heads={HEADS}",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "the pre-training decoder: decoder_embed.weight" in printed and str(out) in printed
    model = timm.create_model(f"local-dir:{out}", pretrained=True)
    assert torch.equal(model.state_dict()["blocks.1.attn.qkv.weight"], sd["blocks.1.attn.qkv.weight"])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architecture"] == "vit_base_patch16_224" and cfg["pretrained_cfg"]["mean"] == [0.485, 0.456, 0.406]
    assert main(["convert", "--format", "fd", str(tmp_path / "milan.pth"), "--out", str(tmp_path / "x")]) == 2
    assert "does not map onto beit_base_patch16_224" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", list(OFFICIAL))
def test_every_format_writes_a_folder_with_identical_outputs(fmt, tmp_path):
    build, kwargs = OFFICIAL[fmt]
    torch.save({"model": build()}, tmp_path / "ck.pth")  # releases wrap the weights in {"model": ...}
    model, _ = convert_state_dict(fmt, build(), kwargs=kwargs)
    convert_checkpoint(fmt, tmp_path / "ck.pth", tmp_path / "out", kwargs=kwargs)
    again = timm.create_model(f"local-dir:{tmp_path / 'out'}", pretrained=True).eval()
    side = model.patch_embed.img_size[0]
    x = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model.forward_features(x), again.forward_features(x))
    assert again.pretrained_cfg["input_size"] == (3, side, side)
