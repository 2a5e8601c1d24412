"""Per-image values kept beside the running sums of the shared pass, for the intervals over images
(:mod:`maskdistill.probes.core.intervals`): every statistic the report draws per layer is a mean
over images of one value per image, so keeping those values (a few numbers per image and layer)
is all a bootstrap over images needs.

Values stay on their device while the pass runs (no synchronisation per block) and come to the CPU
as float32 once, at the end: (images, rows, ...) with rows the layers.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import torch


class PerImageValues:
    """Collects ``(B, ...)`` values per row (layer) batch after batch."""

    def __init__(self) -> None:
        self.chunks: Dict[int, List[torch.Tensor]] = {}
        self.rows = 0

    def add(self, row: int, values: torch.Tensor, rows: int) -> None:
        self.rows = max(self.rows, int(rows))
        self.chunks.setdefault(int(row), []).append(values.detach().to(torch.float32))

    def result(self) -> Optional[np.ndarray]:
        """(images, rows, ...) float32 on the CPU; None when nothing was added."""
        if not self.chunks:
            return None
        per_row = [torch.cat(self.chunks[r]) for r in range(self.rows)]
        return torch.stack(per_row, dim=1).cpu().numpy()


__all__ = ["PerImageValues"]
