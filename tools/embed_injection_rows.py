"""Embed every training/evaluation row once with the shipped int8 encoder; cache the windows' embeddings.

    .venv/bin/python tools/embed_injection_rows.py [--out /tmp/injection_embeddings.npz] [--max-windows 16]

Rows: ../shared/data (prompt_injection/, benign/: the dev rows that tools/train_injection.py splits into train
and held-out) and ../shared/data/train/ (permissive and copyleft sources; train_nc/ is never read). Each row
yields up to --max-windows token windows exactly as the detector cuts them. The cache stores the embeddings,
the row index of each window and the sha256 of each row's text, so a stale cache is detected.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import train_injection as ti

from extproc.detectors._injection.encoder import MODEL_FILE, TOKENIZER_FILE, Encoder

CACHE = Path("/tmp/injection_embeddings.npz")
TRAIN_DIR = ti.DATA / "train"


def all_rows() -> list[ti.Row]:
    """Dev rows first (in load_rows order), then the extra training sources."""
    return ti.load_rows(ti.DATA) + ti.load_rows(TRAIN_DIR)


def text_digest(rows: list[ti.Row]) -> str:
    return hashlib.sha256("\n".join(hashlib.sha256(r.text.encode()).hexdigest() for r in rows).encode()).hexdigest()


def embed(rows: list[ti.Row], max_windows: int) -> tuple[np.ndarray, np.ndarray]:
    encoder = Encoder(ROOT / "extproc" / "data" / MODEL_FILE, ROOT / "extproc" / "data" / TOKENIZER_FILE)
    windows, owner = [], []
    for i, row in enumerate(rows):
        for w in encoder.windows(row.text)[:max_windows]:
            windows.append(w)
            owner.append(i)
    print(f"{len(rows)} rows, {len(windows)} windows", flush=True)
    started, parts = time.time(), []
    step = 2048
    for k in range(0, len(windows), step):
        parts.append(encoder.embed(windows[k : k + step], batch=16))
        print(f"  {k + step}/{len(windows)} windows, {time.time() - started:.0f} s", flush=True)
    return np.concatenate(parts).astype(np.float32), np.asarray(owner, dtype=np.int32)


def load(path: Path = CACHE) -> tuple[list[ti.Row], np.ndarray, np.ndarray]:
    rows = all_rows()
    data = np.load(path)
    if str(data["digest"]) != text_digest(rows):
        raise SystemExit(f"{path} is stale: rerun tools/embed_injection_rows.py")
    return rows, data["emb"], data["owner"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=CACHE)
    parser.add_argument("--max-windows", type=int, default=16)
    args = parser.parse_args()
    rows = all_rows()
    emb, owner = embed(rows, args.max_windows)
    np.savez(args.out, emb=emb, owner=owner, digest=np.asarray(text_digest(rows)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
