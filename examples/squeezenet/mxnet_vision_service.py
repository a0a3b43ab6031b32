"""A custom service in the MXNet Model Server style: a module-level ``handle(data, context)``.

Standard library only, so any TorchServe 0.12 can serve it. The "network" is the one linear
layer described in squeezenet_v1.1-symbol.json: a 64-value summary of the request bytes
times the weights in squeezenet_v1.1-0000.params, then softmax over synset.txt's labels.
"""
import array
import json
import math
import os

_model = None


def _load(model_dir):
    with open(os.path.join(model_dir, "synset.txt")) as f:
        labels = [line.strip().split(" ", 1)[1] for line in f if line.strip()]
    weights = array.array("f")
    with open(os.path.join(model_dir, "squeezenet_v1.1-0000.params"), "rb") as f:
        weights.frombytes(f.read())
    return labels, weights


def _summary(payload):
    """64 features: the mean byte value of 64 equal slices of the input."""
    n = max(len(payload), 64)
    step = n // 64
    out = []
    for i in range(64):
        part = payload[i * step:(i + 1) * step] or b"\0"
        out.append(sum(part) / (255.0 * len(part)))
    return out


def _predict(labels, weights, payload):
    x = _summary(payload)
    logits = [sum(weights[j * 64 + i] * x[i] for i in range(64)) for j in range(len(labels))]
    top = max(logits)
    exp = [math.exp(v - top) for v in logits]
    total = sum(exp)
    ranked = sorted(zip(labels, (e / total for e in exp)), key=lambda t: -t[1])
    return {label: round(p, 4) for label, p in ranked[:3]}


def handle(data, context):
    """TorchServe/MMS entry point: a list of requests in, a list of responses out."""
    global _model
    if _model is None:
        _model = _load(context.system_properties.get("model_dir"))
    if data is None:
        return None
    out = []
    for row in data:
        payload = row.get("data") or row.get("body") or b""
        if isinstance(payload, str):
            payload = payload.encode()
        elif not isinstance(payload, (bytes, bytearray)):
            payload = json.dumps(payload).encode()
        out.append(_predict(*_model, bytes(payload)))
    return out
