"""Read what an offline W&B run wrote: its ``run-ID.wandb`` transaction log (a LevelDB-style
log of protobuf records: 7-byte file header, 32 KiB blocks, records with a 7-byte header of
CRC, length and type, split across blocks as FIRST/MIDDLE/LAST). wandb 0.31 keeps no Python
reader of its own, so tests read the records here."""
from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK, HEADER = 32768, 7
FULL, LAST = 1, 4


def records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2

    data, pos, chunks, out = path.read_bytes(), HEADER, b"", []
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if left < HEADER or (length == 0 and kind == 0):  # block padding
            pos += left
            continue
        chunks += data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            out.append(record)
            chunks = b""
    return out


def run_contents(run_dir: Path) -> dict:
    """``config`` (key -> value), ``summary`` (key -> last value) and ``history`` keys of a run."""
    config, summary, history = {}, {}, set()
    for record in records(next(run_dir.glob("run-*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            config |= {item.key: json.loads(item.value_json) for item in record.run.config.update}
        elif kind == "config":
            config |= {item.key: json.loads(item.value_json) for item in record.config.update}
        elif kind == "summary":
            summary |= {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                        for item in record.summary.update}
        elif kind == "history":
            history |= {item.key or "/".join(item.nested_key) for item in record.history.item}
    return {"config": config, "summary": summary, "history": history}
