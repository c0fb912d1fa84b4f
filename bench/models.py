"""The benchmark models, built once in kiln and copied -- same architecture, same
weights -- into Keras 3 and PyTorch twins. Each builder returns a Twins record.

Every model is defined ONCE as a function of a layers namespace (`kiln.layers` or
`keras.layers`), so the kiln and Keras models cannot drift apart; layers carry explicit
names and weights are copied layer by layer by name. The PyTorch twin is written by hand
to match Keras' math exactly (channels_last input: the torch twin transposes NHWC -> NCHW
inside its forward, so every peer takes the same numpy input).

Weight conversions (Keras -> torch):
  Dense kernel (in, out)            -> Linear.weight (out, in)
  Conv2D kernel HWIO                -> Conv2d.weight OIHW
  BatchNormalization gamma, beta, moving_mean, moving_variance -> weight, bias,
      running_mean, running_var; eps 1e-3 (Keras' default; torch's is 1e-5); momentum is
      only used in training (Keras 0.99 == torch 0.01), not by these inference twins
  LSTM kernel (in, 4u), recurrent_kernel (u, 4u), bias (4u); gates i,f,c,o
                                    -> weight_ih_l0 = kernel.T, weight_hh_l0 = recurrent.T,
      bias_ih_l0 = bias, bias_hh_l0 = 0 (torch's gate order i,f,g,o is the same)
  MultiHeadAttention query/key/value kernel (d, heads, key_dim), bias (heads, key_dim);
      attention_output kernel (heads, key_dim, d), bias (d)
                                    -> Linear over the flattened (heads*key_dim) axis
  Keras "same" padding with stride 2 on even sizes pads (0 before, 1 after): the torch
      twin pads explicitly with F.pad(x, (0, 1, 0, 1)) (torch's padding=1 would differ)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Twins:
    name: str
    kiln: object            # kiln model
    keras: object           # keras.Model with the same weights
    torch: object           # torch.nn.Module with the same weights (eval mode)
    input_shape: tuple      # one sample's shape
    input_dtype: str = "float32"
    vocab: int = 0          # int inputs: tokens in [0, vocab)
    loss: str = "sparse_categorical_crossentropy"
    n_classes: int = 10
    notes: dict = field(default_factory=dict)   # peer -> why it is skipped for this model

    def sample(self, batch: int, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        if self.input_dtype.startswith("int"):
            return rng.integers(0, self.vocab, (batch, *self.input_shape)).astype(self.input_dtype)
        return rng.random((batch, *self.input_shape), dtype=np.float32)

    def targets(self, batch: int, seed: int = 1) -> np.ndarray:
        rng = np.random.default_rng(seed)
        if self.loss == "binary_crossentropy":
            return rng.integers(0, 2, (batch, 1)).astype(np.float32)
        return rng.integers(0, self.n_classes, (batch,)).astype(np.int32)


def _copy_to_keras(km, ke):
    """kiln -> Keras, layer by layer by name (both built from the same definition)."""
    for layer in km.layers:
        w = layer.get_weights()
        if w:
            ke.get_layer(layer.name).set_weights(w)


def _randomize_bn(km, seed=0):
    """Non-trivial BatchNormalization statistics (fresh ones are the identity)."""
    rng = np.random.default_rng(seed)
    for layer in km.layers:
        if type(layer).__name__ == "BatchNormalization":
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape).astype(np.float32),
                               rng.uniform(-0.2, 0.2, b.shape).astype(np.float32),
                               rng.uniform(-0.2, 0.2, m.shape).astype(np.float32),
                               rng.uniform(0.5, 1.5, v.shape).astype(np.float32)])


def _t(a):
    import torch
    return torch.from_numpy(np.ascontiguousarray(a))


def _linear(lin, kernel, bias):
    import torch
    with torch.no_grad():
        lin.weight.copy_(_t(kernel.T))
        lin.bias.copy_(_t(bias))


def _conv(conv, kernel, bias=None):
    import torch
    with torch.no_grad():
        conv.weight.copy_(_t(kernel.transpose(3, 2, 0, 1)))
        if bias is not None:
            conv.bias.copy_(_t(bias))


def _bn(bn, w):
    import torch
    g, b, m, v = w
    with torch.no_grad():
        bn.weight.copy_(_t(g)); bn.bias.copy_(_t(b))
        bn.running_mean.copy_(_t(m)); bn.running_var.copy_(_t(v))


# -- MLP 784-512-512-10 ----------------------------------------------------------------------

def _mlp_def(L, Input, Model):
    x = Input(shape=(784,), name="x")
    h = L.Dense(512, activation="relu", name="d1")(x)
    h = L.Dense(512, activation="relu", name="d2")(h)
    return Model(x, L.Dense(10, activation="softmax", name="d3")(h))


def mlp() -> Twins:
    import keras
    import torch

    import kiln

    kiln.utils.set_random_seed(0)
    km = _mlp_def(kiln.layers, kiln.Input, kiln.Model)
    ke = _mlp_def(keras.layers, keras.Input, keras.Model)
    _copy_to_keras(km, ke)
    tm = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(),
                             torch.nn.Linear(512, 512), torch.nn.ReLU(),
                             torch.nn.Linear(512, 10), torch.nn.Softmax(dim=-1))
    for lin, n in zip([tm[0], tm[2], tm[4]], ["d1", "d2", "d3"]):
        _linear(lin, *km.get_layer(n).get_weights())
    tm.eval()
    return Twins("mlp", km, ke, tm, (784,))


# -- the seed CNN (issue #3's Sequential) on 28x28x1 -------------------------------------------

def _cnn_def(L, Input, Model):
    x = Input(shape=(28, 28, 1), name="x")
    h = L.Conv2D(32, (3, 3), activation="relu", name="c1")(x)
    h = L.MaxPooling2D((2, 2), name="p1")(h)
    h = L.Conv2D(64, (3, 3), activation="relu", name="c2")(h)
    h = L.MaxPooling2D((2, 2), name="p2")(h)
    h = L.Conv2D(128, (3, 3), activation="relu", name="c3")(h)
    h = L.Flatten(name="f")(h)
    h = L.Dense(128, activation="relu", name="d1")(h)
    h = L.Dropout(0.5, name="drop")(h)
    return Model(x, L.Dense(10, activation="softmax", name="d2")(h))


def _torch_cnn():
    import torch
    from torch import nn

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2, self.c3 = nn.Conv2d(1, 32, 3), nn.Conv2d(32, 64, 3), nn.Conv2d(64, 128, 3)
            self.d1, self.d2 = nn.Linear(3 * 3 * 128, 128), nn.Linear(128, 10)
            self.drop = nn.Dropout(0.5)

        def forward(self, x):                       # x: NHWC, like Keras
            x = x.permute(0, 3, 1, 2)
            x = torch.max_pool2d(torch.relu(self.c1(x)), 2)
            x = torch.max_pool2d(torch.relu(self.c2(x)), 2)
            x = torch.relu(self.c3(x))
            x = x.permute(0, 2, 3, 1).flatten(1)    # Keras' Flatten order (channels_last)
            x = self.drop(torch.relu(self.d1(x)))
            return torch.softmax(self.d2(x), dim=-1)
    return CNN()


def cnn() -> Twins:
    import keras

    import kiln

    kiln.utils.set_random_seed(0)
    km = _cnn_def(kiln.layers, kiln.Input, kiln.Model)
    ke = _cnn_def(keras.layers, keras.Input, keras.Model)
    _copy_to_keras(km, ke)
    tm = _torch_cnn()
    for n in ("c1", "c2", "c3"):
        _conv(getattr(tm, n), *km.get_layer(n).get_weights())
    for n in ("d1", "d2"):
        _linear(getattr(tm, n), *km.get_layer(n).get_weights())
    tm.eval()
    return Twins("cnn", km, ke, tm, (28, 28, 1))


# -- small ResNet on 32x32x3 -------------------------------------------------------------------

RESNET_BLOCKS = ((32, 1), (64, 2), (128, 2))


def _resnet_def(L, Input, Model):
    x = Input(shape=(32, 32, 3), name="x")
    h = L.Conv2D(32, 3, padding="same", use_bias=False, name="stem_conv")(x)
    h = L.BatchNormalization(name="stem_bn")(h)
    h = L.Activation("relu", name="stem_relu")(h)
    cin = 32
    for i, (c, s) in enumerate(RESNET_BLOCKS):
        y = L.Conv2D(c, 3, strides=s, padding="same", use_bias=False, name=f"b{i}_conv1")(h)
        y = L.BatchNormalization(name=f"b{i}_bn1")(y)
        y = L.Activation("relu", name=f"b{i}_relu1")(y)
        y = L.Conv2D(c, 3, padding="same", use_bias=False, name=f"b{i}_conv2")(y)
        y = L.BatchNormalization(name=f"b{i}_bn2")(y)
        sc = h
        if s != 1 or c != cin:
            sc = L.Conv2D(c, 1, strides=s, use_bias=False, name=f"b{i}_proj")(h)
            sc = L.BatchNormalization(name=f"b{i}_proj_bn")(sc)
        h = L.Activation("relu", name=f"b{i}_out")(L.Add(name=f"b{i}_add")([y, sc]))
        cin = c
    h = L.GlobalAveragePooling2D(name="gap")(h)
    return Model(x, L.Dense(10, activation="softmax", name="fc")(h))


def _torch_resnet():
    import torch
    import torch.nn.functional as F
    from torch import nn

    def bn(c):
        return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)   # Keras' epsilon and momentum

    class Block(nn.Module):
        def __init__(self, cin, c, s):
            super().__init__()
            self.s = s
            self.conv1 = nn.Conv2d(cin, c, 3, s, padding=1 if s == 1 else 0, bias=False)
            self.bn1, self.bn2 = bn(c), bn(c)
            self.conv2 = nn.Conv2d(c, c, 3, 1, padding=1, bias=False)
            self.proj = (nn.Conv2d(cin, c, 1, s, bias=False) if s != 1 or c != cin else None)
            self.proj_bn = bn(c) if self.proj is not None else None

        def forward(self, h):
            # Keras "same" with stride 2 on an even size pads 0 before and 1 after
            y = self.conv1(F.pad(h, (0, 1, 0, 1)) if self.s == 2 else h)
            y = self.bn2(self.conv2(torch.relu(self.bn1(y))))
            sc = h if self.proj is None else self.proj_bn(self.proj(h))
            return torch.relu(y + sc)

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem_conv = nn.Conv2d(3, 32, 3, padding=1, bias=False)
            self.stem_bn = bn(32)
            cin, blocks = 32, []
            for c, s in RESNET_BLOCKS:
                blocks.append(Block(cin, c, s))
                cin = c
            self.blocks = nn.ModuleList(blocks)
            self.fc = nn.Linear(128, 10)

        def forward(self, x):                       # x: NHWC, like Keras
            h = torch.relu(self.stem_bn(self.stem_conv(x.permute(0, 3, 1, 2))))
            for b in self.blocks:
                h = b(h)
            return torch.softmax(self.fc(h.mean(dim=(2, 3))), dim=-1)
    return ResNet()


def resnet() -> Twins:
    import keras

    import kiln

    kiln.utils.set_random_seed(0)
    km = _resnet_def(kiln.layers, kiln.Input, kiln.Model)
    _randomize_bn(km)
    ke = _resnet_def(keras.layers, keras.Input, keras.Model)
    _copy_to_keras(km, ke)
    tm = _torch_resnet()
    g = lambda n: km.get_layer(n).get_weights()   # noqa: E731
    _conv(tm.stem_conv, *g("stem_conv"))
    _bn(tm.stem_bn, g("stem_bn"))
    for i, b in enumerate(tm.blocks):
        _conv(b.conv1, *g(f"b{i}_conv1")); _bn(b.bn1, g(f"b{i}_bn1"))
        _conv(b.conv2, *g(f"b{i}_conv2")); _bn(b.bn2, g(f"b{i}_bn2"))
        if b.proj is not None:
            _conv(b.proj, *g(f"b{i}_proj")); _bn(b.proj_bn, g(f"b{i}_proj_bn"))
    _linear(tm.fc, *g("fc"))
    tm.eval()
    return Twins("resnet", km, ke, tm, (32, 32, 3))


# -- LSTM classifier: Embedding 10000x64, 64 steps, LSTM 128, Dense 1 sigmoid ------------------

def _lstm_def(L, Input, Model):
    x = Input(shape=(64,), dtype="int32", name="x")
    h = L.Embedding(10000, 64, name="emb")(x)
    h = L.LSTM(128, name="lstm")(h)
    return Model(x, L.Dense(1, activation="sigmoid", name="out")(h))


def _torch_lstm():
    import torch
    from torch import nn

    class LSTMClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10000, 64)
            self.lstm = nn.LSTM(64, 128, batch_first=True)
            self.out = nn.Linear(128, 1)

        def forward(self, x):
            _, (h, _) = self.lstm(self.emb(x.long()))
            return torch.sigmoid(self.out(h[-1]))
    return LSTMClassifier()


def lstm() -> Twins:
    import keras
    import torch

    import kiln

    kiln.utils.set_random_seed(0)
    km = _lstm_def(kiln.layers, kiln.Input, kiln.Model)
    # a wider embedding than Keras' uniform(-0.05, 0.05) init, so that outputs vary
    # enough for the equality check to mean something
    emb_layer = km.get_layer("emb")
    emb_layer.set_weights([np.random.default_rng(0).uniform(
        -1, 1, emb_layer.get_weights()[0].shape).astype(np.float32)])
    ke = _lstm_def(keras.layers, keras.Input, keras.Model)
    _copy_to_keras(km, ke)
    tm = _torch_lstm()
    (emb,) = km.get_layer("emb").get_weights()
    k, r, b = km.get_layer("lstm").get_weights()
    with torch.no_grad():
        tm.emb.weight.copy_(_t(emb))
        tm.lstm.weight_ih_l0.copy_(_t(k.T)); tm.lstm.weight_hh_l0.copy_(_t(r.T))
        tm.lstm.bias_ih_l0.copy_(_t(b)); tm.lstm.bias_hh_l0.zero_()
    _linear(tm.out, *km.get_layer("out").get_weights())
    tm.eval()
    return Twins("lstm", km, ke, tm, (64,), input_dtype="int32", vocab=10000,
                 loss="binary_crossentropy", n_classes=2)


# -- Transformer encoder: 2 blocks, seq 128, d_model 128, 4 heads, FFN 512 ----------------------

T_SEQ, T_D, T_HEADS, T_FFN, T_BLOCKS = 128, 128, 4, 512, 2


def _transformer_def(L, Input, Model):
    x = Input(shape=(T_SEQ, T_D), name="x")
    h = x
    for i in range(T_BLOCKS):
        a = L.MultiHeadAttention(T_HEADS, T_D // T_HEADS, name=f"b{i}_mha")(h, h)
        h = L.LayerNormalization(name=f"b{i}_ln1")(L.Add(name=f"b{i}_add1")([h, a]))
        f = L.Dense(T_FFN, activation="relu", name=f"b{i}_ffn1")(h)
        f = L.Dense(T_D, name=f"b{i}_ffn2")(f)
        h = L.LayerNormalization(name=f"b{i}_ln2")(L.Add(name=f"b{i}_add2")([h, f]))
    return Model(x, h)


def _torch_transformer():
    import torch
    from torch import nn

    class MHA(nn.Module):
        """Keras' MultiHeadAttention math: q scaled by 1/sqrt(key_dim) before q k^T."""
        def __init__(self, d, heads, kd):
            super().__init__()
            self.h, self.kd = heads, kd
            self.q, self.k, self.v = (nn.Linear(d, heads * kd) for _ in range(3))
            self.o = nn.Linear(heads * kd, d)

        def forward(self, x):
            B, T, _ = x.shape
            split = lambda t: t.view(B, T, self.h, self.kd).transpose(1, 2)   # noqa: E731
            q = split(self.q(x)) * (1.0 / math.sqrt(self.kd))
            k, v = split(self.k(x)), split(self.v(x))
            p = torch.softmax(q @ k.transpose(-1, -2), dim=-1)
            return self.o((p @ v).transpose(1, 2).reshape(B, T, self.h * self.kd))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = MHA(T_D, T_HEADS, T_D // T_HEADS)
            self.ln1, self.ln2 = nn.LayerNorm(T_D, eps=1e-3), nn.LayerNorm(T_D, eps=1e-3)
            self.ffn1, self.ffn2 = nn.Linear(T_D, T_FFN), nn.Linear(T_FFN, T_D)

        def forward(self, h):
            h = self.ln1(h + self.mha(h))
            return self.ln2(h + self.ffn2(torch.relu(self.ffn1(h))))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(Block() for _ in range(T_BLOCKS))

        def forward(self, x):
            for b in self.blocks:
                x = b(x)
            return x
    return Encoder()


def transformer() -> Twins:
    import keras
    import torch

    import kiln

    kiln.utils.set_random_seed(0)
    km = _transformer_def(kiln.layers, kiln.Input, kiln.Model)
    ke = _transformer_def(keras.layers, keras.Input, keras.Model)
    _copy_to_keras(km, ke)
    tm = _torch_transformer()
    for i, b in enumerate(tm.blocks):
        qk, qb, kk, kb, vk, vb, ok, ob = km.get_layer(f"b{i}_mha").get_weights()
        for lin, kern, bias in ((b.mha.q, qk, qb), (b.mha.k, kk, kb), (b.mha.v, vk, vb)):
            _linear(lin, kern.reshape(T_D, -1), bias.reshape(-1))
        _linear(b.mha.o, ok.reshape(-1, T_D), ob)
        for ln, n in ((b.ln1, "ln1"), (b.ln2, "ln2")):
            g, beta = km.get_layer(f"b{i}_{n}").get_weights()
            with torch.no_grad():
                ln.weight.copy_(_t(g)); ln.bias.copy_(_t(beta))
        _linear(b.ffn1, *km.get_layer(f"b{i}_ffn1").get_weights())
        _linear(b.ffn2, *km.get_layer(f"b{i}_ffn2").get_weights())
    tm.eval()
    return Twins("transformer", km, ke, tm, (T_SEQ, T_D), loss="mse")


MODELS = {"mlp": mlp, "cnn": cnn, "resnet": resnet, "lstm": lstm, "transformer": transformer}
TRAIN_MODELS = ("mlp", "cnn")
