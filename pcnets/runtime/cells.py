"""cells.jsonl, the resume log of a run folder: one JSON line per finished cell, appended and
fsynced. A line torn by an interruption or a full disk is dropped (that cell is redone) and the
file repaired when read, so that the next append starts on a line of its own."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pcnets.runtime.files import atomic_write

CELLS = "cells.jsonl"


def read_cells(log: Path) -> dict[str, list[dict]]:
    """{cell key: rows} of every whole line; a torn, garbled or malformed line (rows that are
    not a list of tables) is removed from the file, and its cell redone."""
    cells: dict[str, list[dict]] = {}
    if not log.exists():
        return cells
    text = log.read_text()
    good = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
            key, rows = entry["cell"], entry["rows"]
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
        if not (isinstance(key, str) and isinstance(rows, list)):
            continue  # a malformed cell is dropped and redone
        if not all(isinstance(r, dict) for r in rows):
            continue
        cells[key] = rows
        good.append(line)
    repaired = "".join(f"{line}\n" for line in good)
    if repaired != text:
        atomic_write(log, repaired)
    return cells


def append_cell(log: Path, key: str, rows: list[dict]) -> None:
    """Append one finished cell and flush it to disk before anything else is written."""
    with open(log, "a") as fh:
        fh.write(json.dumps({"cell": key, "rows": rows}, default=float) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
