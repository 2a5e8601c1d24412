"""Models in and out the way the field exchanges them: a run's network exported to timm's Hugging
Face hub layout with a model card (``export``), and the published masked-distillation checkpoints
(BEiT v2, FD, MILAN, dBOT, EVA-02) converted into that layout (``convert``)."""

from maskdistill.hub.convert import Conversion, ConvertError, convert_checkpoint, convert_state_dict
from maskdistill.hub.export import export_run
from maskdistill.hub.formats import FORMATS

__all__ = ["FORMATS", "Conversion", "ConvertError", "convert_checkpoint", "convert_state_dict", "export_run"]
