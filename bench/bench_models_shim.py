"""For the cold-compile subprocesses: build a benchmark model by name."""
import os

os.environ.setdefault("KERAS_BACKEND", "jax")


def build(name):
    from models import MODELS
    return MODELS[name]()
