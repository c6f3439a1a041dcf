"""The shipped contextual encoder (all-MiniLM-L6-v2, int8 ONNX, mean pooled) and its linear head.

Texts are cut into token windows of `window` tokens overlapping by `stride` tokens (the tokenizer's own
overflow, so the cost is linear in the text); each window's mean-pooled, L2-normalised embedding is scored by
a logistic head. tools/train_injection.py embeds training rows through this same class, so training and
serving see identical windows and identical int8 arithmetic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

MODEL_FILE = "injection_encoder.onnx"
TOKENIZER_FILE = "injection_tokenizer.json"
HEAD_FILE = "injection_head.json"
WINDOW_TOKENS = 64
STRIDE_TOKENS = 32


@dataclass(frozen=True, slots=True)
class Window:
    """One token window: its ids and the character span of `text` it covers."""

    ids: tuple[int, ...]
    start: int
    end: int


class Encoder:
    def __init__(self, model_path: Path, tokenizer_path: Path, window: int = WINDOW_TOKENS,
                 stride: int = STRIDE_TOKENS, threads: int = 1) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=window, stride=stride)
        self.window = window

    def windows(self, text: str) -> list[Window]:
        """Every token window of `text` in order (the tokenizer's overflowing encodings)."""
        first = self.tokenizer.encode(text)
        return [_window(enc) for enc in (first, *first.overflowing)]

    def embed(self, windows: list[Window], batch: int = 16) -> np.ndarray:
        """Mean-pooled, L2-normalised embeddings (n, dim) of `windows`, batched by similar length."""
        order = sorted(range(len(windows)), key=lambda k: len(windows[k].ids))
        out: list[np.ndarray] = [np.empty(0)] * len(windows)
        for i in range(0, len(order), batch):
            chunk = order[i : i + batch]
            for k, vec in zip(chunk, self._run([windows[k].ids for k in chunk])):
                out[k] = vec
        return np.stack(out) if out else np.zeros((0, 384), dtype=np.float32)

    def _run(self, seqs: list[tuple[int, ...]]) -> np.ndarray:
        width = max(len(s) for s in seqs)
        ids = np.zeros((len(seqs), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, seq in enumerate(seqs):
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, feeds)[0]
        summed = (hidden * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        return summed / np.maximum(np.linalg.norm(summed, axis=1, keepdims=True), 1e-9)


def _window(enc) -> Window:  # type: ignore[no-untyped-def]
    spans = [o for o, special in zip(enc.offsets, enc.special_tokens_mask) if not special]
    start, end = (spans[0][0], spans[-1][1]) if spans else (0, 0)
    return Window(tuple(enc.ids), start, end)


@dataclass(frozen=True)
class Head:
    """Logistic regression over the embedding: p = sigmoid(w . x + b)."""

    weights: np.ndarray
    bias: float
    threshold: float

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        z = embeddings @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))

    @classmethod
    def from_json(cls, text: str) -> Head:
        doc = json.loads(text)
        if doc.get("format") != 1 or doc.get("window_tokens") != WINDOW_TOKENS:
            raise ValueError(f"{HEAD_FILE}: unsupported format or window settings")
        return cls(np.asarray(doc["weights"], dtype=np.float32), float(doc["bias"]), float(doc["threshold"]))


@cache
def shipped() -> tuple[Encoder, Head]:
    """The packaged encoder and head, loaded once per process (no download: the files ship in the wheel)."""
    data = resources.files("extproc").joinpath("data")
    with resources.as_file(data.joinpath(MODEL_FILE)) as model, resources.as_file(data.joinpath(TOKENIZER_FILE)) as tok:
        encoder = Encoder(model, tok)
    return encoder, Head.from_json(data.joinpath(HEAD_FILE).read_text())
