"""Keras-style layers."""
from .base import Layer
from .core import Activation, Dense, Dropout, Flatten, Reshape
from .input_layer import Input, InputLayer, KerasTensor

__all__ = ["Layer", "InputLayer", "Input", "KerasTensor", "Dense", "Activation", "Dropout",
           "Flatten", "Reshape"]
