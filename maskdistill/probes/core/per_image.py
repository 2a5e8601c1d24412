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

from maskdistill.parallel.collectives import gather_rows
from maskdistill.parallel.group import Dist


class PerImageValues:
    """Collects ``(B, ...)`` values per row (layer) batch after batch."""

    def __init__(self) -> None:
        self.chunks: Dict[int, List[torch.Tensor]] = {}
        self.rows = 0
        self.gathered: Optional[np.ndarray] = None  # every rank's values, once reduced
        self.reduced = False

    def add(self, row: int, values: torch.Tensor, rows: int) -> None:
        self.rows = max(self.rows, int(rows))
        self.chunks.setdefault(int(row), []).append(values.detach().to(torch.float32))

    def reduce(self, world: Dist) -> None:
        """Every rank's values in image order (the ranks' shares are contiguous and in rank order)."""
        self.gathered, self.reduced = gather_rows(self._local(), world), True

    def result(self) -> Optional[np.ndarray]:
        """(images, rows, ...) float32 on the CPU; None when nothing was added."""
        return self.gathered if self.reduced else self._local()

    def _local(self) -> Optional[np.ndarray]:
        if not self.chunks:
            return None
        per_row = [torch.cat(self.chunks[r]) for r in range(self.rows)]
        return torch.stack(per_row, dim=1).cpu().numpy()


__all__ = ["PerImageValues"]
