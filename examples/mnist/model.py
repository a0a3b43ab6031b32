"""The model definition: a 784 -> 32 -> 10 MLP over raw float32 weights (standard library)."""
import array


class MLP:
    SIZES = [(784, 32), (32, 10)]

    def __init__(self, state_path):
        blob = array.array("f")
        with open(state_path, "rb") as f:
            blob.frombytes(f.read())
        self.layers, at = [], 0
        for n_in, n_out in self.SIZES:
            w = blob[at:at + n_in * n_out]
            at += n_in * n_out
            b = blob[at:at + n_out]
            at += n_out
            self.layers.append((n_in, n_out, w, b))

    def forward(self, x):
        for i, (n_in, n_out, w, b) in enumerate(self.layers):
            x = [sum(w[j * n_in + k] * x[k] for k in range(n_in)) + b[j] for j in range(n_out)]
            if i < len(self.layers) - 1:
                x = [max(v, 0.0) for v in x]
        return x
