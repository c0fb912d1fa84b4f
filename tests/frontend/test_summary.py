"""model.summary() against real Keras 3 printouts.

The expected tables below are copied from printouts made by real Keras 3 (found with
the search tool in public repositories; see the comment on each). They are not
produced by kiln. Keras sizes the table from the terminal width
(min(88, columns - 4)), so each test fixes COLUMNS as the printout's width implies.
"""
import pytest

import kiln
from kiln import layers, ops


def _capture(model, **kw):
    out = []
    model.summary(print_fn=out.append, **kw)
    assert len(out) == 1  # Keras 3 hands print_fn the whole summary at once
    return out[0]


# Source: a README in a public repository (found by the `code` search corpus, which did
# not name the repository), printing the summary of
#   tf.keras.models.Sequential([Input(shape=(28, 28)), Flatten(),
#                               Dense(16, activation='relu'), Dense(10, activation='softmax')])
# under Keras 3 in an 80-column terminal (line_length 76).
MNIST_16 = """\
Model: "sequential"
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓
┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩
│ flatten (Flatten)               │ (None, 784)            │             0 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dense (Dense)                   │ (None, 16)             │        12,560 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dense_1 (Dense)                 │ (None, 10)             │           170 │
└─────────────────────────────────┴────────────────────────┴───────────────┘
 Total params: 12,730 (49.73 KB)
 Trainable params: 12,730 (49.73 KB)
 Non-trainable params: 0 (0.00 B)
"""


def test_summary_matches_keras_mnist_mlp(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    m = kiln.Sequential([kiln.Input(shape=(28, 28)), layers.Flatten(),
                         layers.Dense(16, activation="relu"),
                         layers.Dense(10, activation="softmax")])
    assert _capture(m) == MNIST_16


def test_summary_print_fn_none_writes_stdout(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")
    m = kiln.Sequential([kiln.Input(shape=(28, 28)), layers.Flatten(),
                         layers.Dense(16, activation="relu"),
                         layers.Dense(10, activation="softmax")])
    m.summary()
    assert capsys.readouterr().out == MNIST_16


# Source: study notes in a public repository (found by the `code` search corpus, which did
# not name the repository): Keras 3 output of
#   model = Sequential(); model.add(Dense(2, input_shape=(3,), activation='relu'));
#   model.add(Dense(1)); model.summary()
ADD_INPUT_SHAPE = """\
Model: "sequential"
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓
┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩
│ dense (Dense)                   │ (None, 2)              │             8 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dense_1 (Dense)                 │ (None, 1)              │             3 │
└─────────────────────────────────┴────────────────────────┴───────────────┘
 Total params: 11 (44.00 B)
 Trainable params: 11 (44.00 B)
 Non-trainable params: 0 (0.00 B)
"""


def test_summary_matches_keras_add_with_input_shape(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    m = kiln.Sequential()
    m.add(layers.Dense(2, input_shape=(3,), activation="relu"))
    m.add(layers.Dense(1))
    assert _capture(m) == ADD_INPUT_SHAPE


# Source: a Python file in a public repository (found by the `code` search corpus, which
# did not name the repository) with this Keras 3 output pasted as comments ("# " prefix
# removed here) for
#   Sequential([Dense(10, activation='relu', input_shape=(4,)), Dense(1, activation='sigmoid')])
# The table is 62 wide: a 66-column terminal. It checks rich's column sizing at a width
# other than the usual 76 / 88.
NARROW_62 = """\
Model: "sequential"
┏━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━┓
┃ Layer (type)             ┃ Output Shape       ┃    Param # ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━┩
│ dense (Dense)            │ (None, 10)         │         50 │
├──────────────────────────┼────────────────────┼────────────┤
│ dense_1 (Dense)          │ (None, 1)          │         11 │
└──────────────────────────┴────────────────────┴────────────┘
 Total params: 61 (244.00 B)
 Trainable params: 61 (244.00 B)
 Non-trainable params: 0 (0.00 B)
"""


def test_summary_matches_keras_at_width_62(monkeypatch):
    m = kiln.Sequential([layers.Dense(10, activation="relu", input_shape=(4,)),
                         layers.Dense(1, activation="sigmoid")])
    assert _capture(m, line_length=62) == NARROW_62
    monkeypatch.setenv("COLUMNS", "66")
    assert _capture(m) == NARROW_62


# Source: notes in a public repository (found by the `code` search corpus, which did not
# name the repository): Keras 3 summary of a Fashion-MNIST CNN in a wide terminal (the
# default line_length 88). Only the header and the last four rows (Flatten, Dense(64),
# Dropout, Dense(10) on (7, 7, 128) feature maps) are used: kiln has no Conv2D yet.
WIDE_HEADER = [
    "┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━┓",
    "┃ Layer (type)                         ┃ Output Shape                ┃         Param # ┃",
    "┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━┩",
]
WIDE_TAIL = [
    "│ flatten (Flatten)                    │ (None, 6272)                │               0 │",
    "├──────────────────────────────────────┼─────────────────────────────┼─────────────────┤",
    "│ dense (Dense)                        │ (None, 64)                  │         401,472 │",
    "├──────────────────────────────────────┼─────────────────────────────┼─────────────────┤",
    "│ dropout (Dropout)                    │ (None, 64)                  │               0 │",
    "├──────────────────────────────────────┼─────────────────────────────┼─────────────────┤",
    "│ dense_1 (Dense)                      │ (None, 10)                  │             650 │",
    "└──────────────────────────────────────┴─────────────────────────────┴─────────────────┘",
]


def test_summary_matches_keras_default_width_88(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    m = kiln.Sequential([kiln.Input(shape=(7, 7, 128)), layers.Flatten(), layers.Dense(64),
                         layers.Dropout(0.5), layers.Dense(10, activation="softmax")])
    lines = _capture(m).splitlines()
    assert lines[0] == 'Model: "sequential"'
    assert lines[1:1 + 3 + len(WIDE_TAIL)] == WIDE_HEADER + WIDE_TAIL
    assert lines[-3:] == [" Total params: 402,122 (1.53 MB)",
                          " Trainable params: 402,122 (1.53 MB)",
                          " Non-trainable params: 0 (0.00 B)"]


# Source: keras-team/keras-io, guides/md/orbax_checkpoint.md at commit
# 026b3b694c49e82955c696c1ef2034ac02e67cd2 (rendered HTML spans removed): the summary of
#   inputs = keras.Input(shape=(32,)); x = Dense(64, activation="relu", name="dense_1")(inputs)
#   outputs = Dense(1, name="dense_2")(x); keras.Model(inputs, outputs)
# A functional model lists its InputLayer; that row (and its separator) is left out to
# compare with the equivalent kiln.Sequential. Its "Total params" counts optimizer slots.
KERAS_IO_TABLE = [
    "┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓",
    "┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃",
    "┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩",
    # "│ input_layer (InputLayer)        │ (None, 32)             │             0 │",
    # "├─────────────────────────────────┼────────────────────────┼───────────────┤",
    "│ dense_1 (Dense)                 │ (None, 64)             │         2,112 │",
    "├─────────────────────────────────┼────────────────────────┼───────────────┤",
    "│ dense_2 (Dense)                 │ (None, 1)              │            65 │",
    "└─────────────────────────────────┴────────────────────────┴───────────────┘",
]


def test_summary_matches_keras_io_guide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    m = kiln.Sequential([kiln.Input(shape=(32,)),
                         layers.Dense(64, activation="relu", name="dense_1"),
                         layers.Dense(1, name="dense_2")])
    lines = _capture(m).splitlines()
    assert lines[1:8] == KERAS_IO_TABLE
    assert lines[9:] == [" Trainable params: 2,177 (8.50 KB)", " Non-trainable params: 0 (0.00 B)"]


# Source: a README in a public repository (found by the `code` search corpus, which did not
# name the repository): Keras 3 summary of an Inception-ResNet-v2 backbone (frozen) with a
# head GlobalAveragePooling2D -> BatchNormalization -> Dense(512) -> Dense(256) -> Dropout
# -> Dense(128) -> Dense(120). The backbone row is left out (kiln cannot hold a 54M-param
# functional model in a unit test); the rest checks cell wrapping (long "name (Class)"
# cells continue on a second line) and non-trainable weights.
WRAPPED_ROWS = [
    "│ global_average_pooling2d        │ (None, 1536)           │             0 │",
    "│ (GlobalAveragePooling2D)        │                        │               │",
    "├─────────────────────────────────┼────────────────────────┼───────────────┤",
    "│ batch_normalization_203         │ (None, 1536)           │         6,144 │",
    "│ (BatchNormalization)            │                        │               │",
    "├─────────────────────────────────┼────────────────────────┼───────────────┤",
    "│ dense (Dense)                   │ (None, 512)            │       786,944 │",
    "├─────────────────────────────────┼────────────────────────┼───────────────┤",
    "│ dense_1 (Dense)                 │ (None, 256)            │       131,328 │",
    "├─────────────────────────────────┼────────────────────────┼───────────────┤",
    "│ dropout (Dropout)               │ (None, 256)            │             0 │",
    "├─────────────────────────────────┼────────────────────────┼───────────────┤",
    "│ dense_2 (Dense)                 │ (None, 128)            │        32,896 │",
    "├─────────────────────────────────┼────────────────────────┼───────────────┤",
    "│ dense_3 (Dense)                 │ (None, 120)            │        15,480 │",
    "└─────────────────────────────────┴────────────────────────┴───────────────┘",
]


class GlobalAveragePooling2D(layers.Layer):  # stand-ins, named as the Keras classes
    def call(self, x):
        return ops.mean(x, axis=(1, 2))


class BatchNormalization(layers.Layer):
    def build(self, input_shape):
        c = (input_shape[-1],)
        self.gamma = self.add_weight(c, "ones", name="gamma")
        self.beta = self.add_weight(c, "zeros", name="beta")
        self.moving_mean = self.add_weight(c, "zeros", name="moving_mean", trainable=False)
        self.moving_variance = self.add_weight(c, "ones", name="moving_variance", trainable=False)

    def call(self, x):
        scale = ops.divide(self.gamma, ops.sqrt(ops.add(self.moving_variance, 1e-3)))
        return ops.add(ops.multiply(ops.subtract(x, self.moving_mean), scale), self.beta)


def test_summary_wraps_long_cells_like_keras(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    m = kiln.Sequential([kiln.Input(shape=(9, 9, 1536)), GlobalAveragePooling2D(),
                         BatchNormalization(name="batch_normalization_203"),
                         layers.Dense(512), layers.Dense(256), layers.Dropout(0.3),
                         layers.Dense(128), layers.Dense(120, activation="softmax")])
    lines = _capture(m).splitlines()
    assert lines[1:4] == KERAS_IO_TABLE[:3]
    assert lines[4:4 + len(WRAPPED_ROWS)] == WRAPPED_ROWS
    # that printout's footer was re-typed (no leading space); the backbone is frozen, so
    # its trainable count is exactly the head's
    assert lines[-2].strip() == "Trainable params: 969,720 (3.70 MB)"
    assert lines[-1] == " Non-trainable params: 3,072 (12.00 KB)"


# Source: a tutorial in a public repository (found by the `code` search corpus, which did
# not name the repository): Keras 3 `model.summary(show_trainable=True)` of a frozen
# Xception base + GlobalAveragePooling2D -> Dropout(0.2) -> Dense(2, softmax), in an
# 80-column terminal. The "Trainable" header is cropped to "Trai…" by rich. The rows from
# the pooling layer on are compared (kiln has no Rescaling / Xception).
TRAINABLE_HEADER = [
    "┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━┓",
    "┃ Layer (type)                ┃ Output Shape          ┃    Param # ┃ Trai… ┃",
    "┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━┩",
]
TRAINABLE_ROWS = [
    "│ global_average_pooling2d_3  │ (None, 2048)          │          0 │   -   │",
    "│ (GlobalAveragePooling2D)    │                       │            │       │",
    "├─────────────────────────────┼───────────────────────┼────────────┼───────┤",
    "│ dropout_3 (Dropout)         │ (None, 2048)          │          0 │   -   │",
    "├─────────────────────────────┼───────────────────────┼────────────┼───────┤",
    "│ dense_3 (Dense)             │ (None, 2)             │      4,098 │   Y   │",
    "└─────────────────────────────┴───────────────────────┴────────────┴───────┘",
]


def test_summary_show_trainable_matches_keras(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    m = kiln.Sequential([kiln.Input(shape=(5, 5, 2048)),
                         GlobalAveragePooling2D(name="global_average_pooling2d_3"),
                         layers.Dropout(0.2, name="dropout_3"),
                         layers.Dense(2, activation="softmax", name="dense_3")])
    lines = _capture(m, show_trainable=True).splitlines()
    assert lines[1:4] == TRAINABLE_HEADER
    assert lines[4:4 + len(TRAINABLE_ROWS)] == TRAINABLE_ROWS


# -- cases for which no real printout was at hand: expected text written by hand from
# keras/src/utils/summary_utils.py (keras-team/keras): unbuilt layers show "?" and
# "0 (unbuilt)"; a frozen layer with weights shows "N".
def test_summary_unbuilt_model():
    m = kiln.Sequential([layers.Dense(4), layers.Dense(2)], name="lazy")
    text = _capture(m, line_length=76)
    assert text.splitlines()[0] == 'Model: "lazy"'
    assert text.splitlines()[4] == "│ dense (Dense)                   │ ?                      │   0 (unbuilt) │"
    assert text.endswith(" Total params: 0 (0.00 B)\n Trainable params: 0 (0.00 B)\n"
                         " Non-trainable params: 0 (0.00 B)\n")


def test_summary_frozen_layer_and_layer_range(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    m = kiln.Sequential([kiln.Input(shape=(3,)), layers.Dense(2), layers.Dropout(0.1),
                         layers.Dense(1)])
    m.layers[0].trainable = False
    lines = _capture(m, show_trainable=True).splitlines()
    assert lines[4] == "│ dense (Dense)               │ (None, 2)             │          8 │   N   │"
    assert lines[-3:] == [" Total params: 11 (44.00 B)", " Trainable params: 3 (12.00 B)",
                          " Non-trainable params: 8 (32.00 B)"]
    ranged = _capture(m, line_length=76, layer_range=("dropout", "dense_1")).splitlines()
    assert [l.split()[1] for l in ranged if l.startswith("│ ")] == ["dropout", "dense_1"]


def test_summary_too_narrow():
    m = kiln.Sequential([kiln.Input(shape=(3,)), layers.Dense(2)])
    with pytest.raises(ValueError, match="Insufficient console width"):
        m.summary(line_length=8, print_fn=lambda s: None)
