"""A torch-model-archiver-style handler: exactly one class, found by TorchServe's class rule.

TorchServe instantiates the module's only class, calls ``initialize(context)`` once, then
``handle(data, context)`` per batch. (A real model would derive from
``ts.torch_handler.base_handler.BaseHandler``; this one needs nothing beyond the stdlib.)
"""
import json
import os

from model import MLP


class MNISTHandler:
    def __init__(self):
        self.model = None

    def initialize(self, context):
        props = context.system_properties
        manifest = context.manifest
        state = os.path.join(props.get("model_dir"), manifest["model"]["serializedFile"])
        self.model = MLP(state)

    def handle(self, data, context):
        if self.model is None:
            self.initialize(context)
        out = []
        for row in data or []:
            body = row.get("data") or row.get("body") or b"[]"
            pixels = json.loads(body) if isinstance(body, (bytes, bytearray, str)) else body
            pixels = (list(pixels) + [0.0] * 784)[:784]
            scores = self.model.forward([float(p) for p in pixels])
            out.append({"digit": max(range(10), key=scores.__getitem__)})
        return out
