"""A fine-tune that keeps a timm ImageNet-size head must be given that head's classes in its order:
a WordNet-id subset would score label k (the k-th folder) as ImageNet output k."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file
from tests.helpers.finetune import VIT_KW
from timm.data import ImageNetInfo

from maskdistill.errors import UsageError
from maskdistill.models.classifier import build_classifier_model


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    m = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=1000, img_size=32, **VIT_KW)
    path = tmp_path_factory.mktemp("w") / "in1k.safetensors"
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path))
    return path


def test_kept_imagenet_head_refuses_a_wordnet_subset_and_takes_all_classes_in_order(weights):
    spec = f"timm:vit_small_patch16_224@{weights}"
    with pytest.raises(UsageError, match="subset of its classes.*model.num_classes=0"):
        build_classifier_model(spec, 1000, 32, classes=["n01443537", "n01530575"], **VIT_KW)
    wnids = list(ImageNetInfo().label_names())
    model, _ = build_classifier_model(spec, 1000, 32, classes=wnids, **VIT_KW)
    assert torch.equal(model.head.weight, load_file(str(weights))["head.weight"])  # the head is kept
    model2, _ = build_classifier_model(spec, 2, 32, classes=["n01443537", "n01530575"], **VIT_KW)
    assert model.num_classes == 1000 and model2.num_classes == 2  # a new head for the data's classes is fine
