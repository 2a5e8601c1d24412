"""Running one job in many processes (``torchrun``, single- and multi-node): the process group
(group.py), the reductions and gathers the jobs agree through (collectives.py) and the contiguous
shares of a set of items each rank works on (shards.py). Pre-training's DDP loop and the
data-parallel analysis (``maskdistill analyze`` under torchrun) both build on it."""
