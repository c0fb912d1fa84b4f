"""Bad input gets a clear error, never a crash or silent garbage."""
import numpy as np
import pytest

import kiln
from kiln import layers

X = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)


def clf(loss="sparse_categorical_crossentropy"):
    m = kiln.Sequential([kiln.Input(shape=(4,)), layers.Dense(3, activation="softmax")])
    m.compile(optimizer="adam", loss=loss)
    return m


def test_not_compiled_and_no_loss():
    m = kiln.Sequential([kiln.Input(shape=(4,)), layers.Dense(3)])
    for call in (lambda: m.fit(X, X), lambda: m.evaluate(X, X), lambda: m.train_on_batch(X, X)):
        with pytest.raises(RuntimeError, match="compile"):
            call()
    m.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="without a loss"):
        m.fit(X, X[:, :3], verbose=0)


def test_data_cardinality_and_shapes():
    m = clf()
    with pytest.raises(ValueError, match=r"Data cardinality is ambiguous.*'x' sizes: 20 'y' sizes: 19"):
        m.fit(X, np.zeros(19, int), verbose=0)
    with pytest.raises(ValueError, match="sample_weight' sizes: 3"):
        m.fit(X, np.zeros(20, int), sample_weight=np.ones(3), verbose=0)
    with pytest.raises(ValueError, match="expects 4|expected shape"):
        m.fit(np.zeros((20, 5), np.float32), np.zeros(20, int), verbose=0)
    with pytest.raises(ValueError, match="class_weight` and `sample_weight"):
        m.fit(X, np.zeros(20, int), sample_weight=np.ones(20), class_weight={0: 1.0}, verbose=0)
    with pytest.raises(ValueError, match="batch_size"):
        m.fit(X, np.zeros(20, int), batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="validation_split"):
        m.fit(X[:1], np.zeros(1, int), validation_split=0.5, verbose=0)


def test_sparse_labels_out_of_range_or_not_integers():
    m = clf()
    with pytest.raises(ValueError, match=r"label 3 is out of range.*3 classes.*\[0, 2\]"):
        m.fit(X, np.array([0, 1, 2, 3] * 5), verbose=0)
    with pytest.raises(ValueError, match="label -1 is out of range"):
        m.evaluate(X, -np.ones(20, int), verbose=0)
    with pytest.raises(ValueError, match="integer class indices"):
        m.fit(X, np.full(20, 0.5), verbose=0)


def test_loss_that_does_not_fit_the_output():
    m = clf(loss="categorical_crossentropy")
    with pytest.raises(ValueError, match=r"does not fit.*\(None, 5\).*\(None, 3\)"):
        m.fit(X, np.zeros((20, 5), np.float32), verbose=0)
    m = clf(loss="mse")
    with pytest.raises(ValueError, match="does not fit"):
        m.fit(X, np.zeros(20, np.float32), verbose=0)
    m = clf(loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="do not fit|does not fit"):
        m.fit(X, np.zeros((20, 2), int), verbose=0)


def test_bad_compile_arguments():
    m = kiln.Sequential([kiln.Input(shape=(4,)), layers.Dense(3)])
    with pytest.raises(ValueError, match="Could not interpret optimizer"):
        m.compile(optimizer="adamm", loss="mse")
    with pytest.raises(ValueError, match="metrics` argument to be a list"):
        m.compile(optimizer="sgd", loss="mse", metrics="mae")
    m.compile(optimizer="sgd", loss="msee")
    with pytest.raises(ValueError, match="Could not interpret loss"):
        m.fit(X, X[:, :3], verbose=0)
