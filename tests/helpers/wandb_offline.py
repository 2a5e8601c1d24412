"""Reading what an offline W&B run wrote (``WANDB_MODE=offline``: ``<dir>/wandb/offline-run-*/run-<id>.wandb``):
the file is a LevelDB-style log -- a 7-byte header (``:W&B``, magic, version), then 32 KiB blocks of
records, each with a 7-byte header (CRC32, little-endian length, type: full, first, middle, last) --
whose payloads are ``wandb_internal_pb2.Record`` protobufs. The tests read the history rows from it."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

BLOCK, HEADER = 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _payloads(path: Path) -> Iterator[bytes]:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B log"
    pos, parts = HEADER, []
    while pos + HEADER <= len(data):
        room = BLOCK - pos % BLOCK
        if room < HEADER:  # a block's tail too short for a header is padding
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if length == 0 and kind == 0:  # zero padding at the end of a block
            pos += room
            continue
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            parts = [chunk]
        elif kind == MIDDLE:
            parts.append(chunk)
        elif kind == LAST:
            yield b"".join(parts + [chunk])


def history(path: Path) -> List[Tuple[int, Dict[str, object]]]:
    """[(step, {key: value})] of every ``run.log`` call in the file, in order."""
    from wandb.proto import wandb_internal_pb2

    rows = []
    for payload in _payloads(path):
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(payload)
        if rec.WhichOneof("record_type") == "history":
            items = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item}
            items = {k: v for k, v in items.items() if not k.startswith("_")}  # W&B's own (_step, _timestamp)
            rows.append((int(items.pop("step")), items))
    return rows


def offline_runs(run_dir: Path) -> List[Path]:
    """The ``.wandb`` files of a run folder, oldest first (one per start or resume)."""
    return sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))


def run_config(path: Path) -> Dict[str, object]:
    """The config the run logged (``wandb.init(config=...)``), as a nested dict."""
    from wandb.proto import wandb_internal_pb2

    for payload in _payloads(path):
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(payload)
        if rec.WhichOneof("record_type") == "run":
            items = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.run.config.update}
            return {k: v.get("value", v) if isinstance(v, dict) else v for k, v in items.items()}
    return {}
