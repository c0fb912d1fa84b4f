"""Independent numpy references for the frontend tests."""
import numpy as np


def relu(x):
    return np.maximum(x, 0)


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def mlp_forward(x, weights, activations):
    """Dense layers: act(x @ W + b) for each (W, b) pair in ``weights``."""
    h = x.astype(np.float64)
    for (w, b), act in zip(zip(weights[::2], weights[1::2]), activations):
        h = act(h @ w.astype(np.float64) + b.astype(np.float64))
    return h
