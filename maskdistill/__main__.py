"""``python -m maskdistill <command>``: the same as the ``maskdistill`` command; torchrun starts it
as ``torchrun --nproc_per_node=N -m maskdistill pretrain ...``."""

import sys

from maskdistill.cli import main

if __name__ == "__main__":
    sys.exit(main())
