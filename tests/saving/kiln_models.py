"""kiln-built models shared by the saving tests and the fixture generator's phase 2
(tests/fixtures/keras/make_fixtures.py --kiln). Takes the ``kiln`` module as argument so
the generator can import it from its own environment."""
import numpy as np


def _randomize(model, seed):
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if "variance" in v.name:
            v.assign(rng.uniform(0.5, 2.0, v.shape).astype(v.dtype))
        else:
            v.assign((rng.standard_normal(v.shape) * 0.5).astype(v.dtype))


def kiln_models(kiln):
    L = kiln.layers
    out = {}
    out["mlp"] = kiln.Sequential([kiln.Input((8,)), L.Dense(16, activation="relu"),
                                  L.Dropout(0.1), L.Dense(4, activation="softmax")],
                                 name="kmlp")
    a, b = kiln.Input((6,), name="a"), kiln.Input((6,), name="b")
    shared = L.Dense(5, activation="tanh", name="shared")
    h = L.Concatenate(name="cat")([shared(a), shared(b)])
    h = L.BatchNormalization(name="bn")(h)
    out["two_input"] = kiln.Model([a, b], L.Dense(3, name="head")(h), name="ktwo")
    x = kiln.Input((5, 3), name="seq")
    h = L.Bidirectional(L.LSTM(4, return_sequences=True))(x)
    h = L.GRU(3)(h)
    out["rnn"] = kiln.Model(x, L.Dense(2)(h), name="krnn")
    x = kiln.Input((4, 8), name="tokens")
    att = L.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(x, x)
    h = L.LayerNormalization(name="ln")(L.Add()([x, att]))
    out["transformer"] = kiln.Model(x, L.Dense(2)(L.GlobalAveragePooling1D()(h)), name="ktr")
    out["cnn"] = kiln.Sequential([kiln.Input((8, 8, 2)), L.Conv2D(3, 3, activation="relu"),
                                  L.MaxPooling2D(), L.Flatten(), L.Dense(2)], name="kcnn")
    inner = kiln.Sequential([kiln.Input((4,)), L.Dense(3, activation="relu"),
                             L.BatchNormalization()], name="inner")
    x = kiln.Input((4,), name="x")
    out["nested"] = kiln.Model(x, L.Dense(2)(inner(x)), name="outer")
    for i, m in enumerate(out.values()):
        _randomize(m, 100 + i)
    return out
