"""Regenerate the examples' small weight files (deterministic, standard library only).

    python examples/make_weights.py

The files are committed, so nothing is downloaded and `doit archive` needs no step before it.
"""
from __future__ import annotations

import array
import json
import random
from pathlib import Path

HERE = Path(__file__).parent


def floats(n: int, seed: int, scale: float = 0.02) -> bytes:
    rng = random.Random(seed)
    return array.array("f", (rng.gauss(0.0, scale) for _ in range(n))).tobytes()


def main() -> None:
    labels = (HERE / "squeezenet/synset.txt").read_text().split("\n")
    labels = [l for l in labels if l]
    # squeezenet stand-in: one linear layer from a 64-value image summary to the labels.
    (HERE / "squeezenet/squeezenet_v1.1-0000.params").write_bytes(floats(64 * len(labels), 1, 2.0))
    # mnist: a 784 -> 32 -> 10 MLP, raw little-endian float32, weights then biases per layer.
    sizes = [784 * 32, 32, 32 * 10, 10]
    blob = b"".join(floats(n, 10 + i) for i, n in enumerate(sizes))
    (HERE / "mnist/mnist_state.bin").write_bytes(blob)
    print(json.dumps({"squeezenet": 64 * len(labels), "mnist": sum(sizes)}))


if __name__ == "__main__":
    main()
