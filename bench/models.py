"""The benchmark models, built once in kiln and copied -- same architecture, same
weights -- into Keras 3 and PyTorch twins. Each builder returns a Twins record.

Only the MLP is here so far; the CNN, ResNet, LSTM and Transformer twins come as
kiln's layers for them land (see bench/README.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Twins:
    name: str
    kiln: object            # kiln model
    keras: object           # keras.Model with the same weights
    torch: object           # torch.nn.Module with the same weights (eval mode)
    input_shape: tuple      # one sample's shape
    input_dtype: str = "float32"

    def sample(self, batch: int, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return rng.random((batch, *self.input_shape), dtype=np.float32)


def mlp() -> Twins:
    import keras
    import torch

    import kiln

    kiln.utils.set_random_seed(0)
    km = kiln.Sequential([kiln.Input(shape=(784,)),
                          kiln.layers.Dense(512, activation="relu"),
                          kiln.layers.Dense(512, activation="relu"),
                          kiln.layers.Dense(10, activation="softmax")])
    w = km.get_weights()
    ke = keras.Sequential([keras.Input(shape=(784,)),
                           keras.layers.Dense(512, activation="relu"),
                           keras.layers.Dense(512, activation="relu"),
                           keras.layers.Dense(10, activation="softmax")])
    ke.set_weights(w)
    tm = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(),
                             torch.nn.Linear(512, 512), torch.nn.ReLU(),
                             torch.nn.Linear(512, 10), torch.nn.Softmax(dim=-1))
    with torch.no_grad():
        for lin, (k, b) in zip([tm[0], tm[2], tm[4]], zip(w[0::2], w[1::2])):
            lin.weight.copy_(torch.from_numpy(k.T.copy()))
            lin.bias.copy_(torch.from_numpy(b))
    tm.eval()
    return Twins("mlp", km, ke, tm, (784,))


MODELS = {"mlp": mlp}
