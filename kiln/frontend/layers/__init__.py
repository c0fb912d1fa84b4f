"""Keras-style layers."""
from .base import Layer
from .core import Activation, Dense, Dropout, Flatten, Reshape
from .input_layer import Input, InputLayer, KerasTensor

__all__ = ["Layer", "InputLayer", "Input", "KerasTensor", "Dense", "Activation", "Dropout",
           "Flatten", "Reshape"]

# convolution, pooling, normalization, merging, reshaping, activations, preprocessing
from .activation_layers import ELU, LeakyReLU, PReLU, ReLU, Softmax  # noqa: E402
from .convolutional import (Conv1D, Conv1DTranspose, Conv2D, Conv2DTranspose,  # noqa: E402
                            Convolution1D, Convolution2D, Convolution2DTranspose, DepthwiseConv1D,
                            DepthwiseConv2D, SeparableConv1D, SeparableConv2D,
                            SeparableConvolution2D)
from .input_spec import InputSpec  # noqa: E402
from .merging import (Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply,  # noqa: E402
                      Subtract, add, average, concatenate, dot, maximum, minimum, multiply,
                      subtract)
from .normalization import BatchNormalization, LayerNormalization  # noqa: E402
from .pooling import (AveragePooling1D, AveragePooling2D, AvgPool1D, AvgPool2D,  # noqa: E402
                      GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalAvgPool1D,
                      GlobalAvgPool2D, GlobalMaxPool1D, GlobalMaxPool2D, GlobalMaxPooling1D,
                      GlobalMaxPooling2D, MaxPool1D, MaxPool2D, MaxPooling1D, MaxPooling2D)
from .preprocessing import Normalization, Rescaling  # noqa: E402
from .reshaping import (Cropping1D, Cropping2D, Permute, RepeatVector, UpSampling1D,  # noqa: E402
                        UpSampling2D, ZeroPadding1D, ZeroPadding2D)

__all__ += ["InputSpec", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "Conv1D", "Conv2D",
            "Conv1DTranspose", "Conv2DTranspose", "DepthwiseConv1D", "DepthwiseConv2D",
            "SeparableConv1D", "SeparableConv2D", "Convolution1D", "Convolution2D",
            "Convolution2DTranspose", "SeparableConvolution2D", "MaxPooling1D", "MaxPooling2D",
            "AveragePooling1D", "AveragePooling2D", "GlobalAveragePooling1D",
            "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "MaxPool1D",
            "MaxPool2D", "AvgPool1D", "AvgPool2D", "GlobalAvgPool1D", "GlobalAvgPool2D",
            "GlobalMaxPool1D", "GlobalMaxPool2D", "BatchNormalization", "LayerNormalization",
            "Concatenate", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Dot",
            "concatenate", "add", "subtract", "multiply", "average", "maximum", "minimum", "dot",
            "Permute", "RepeatVector", "ZeroPadding1D", "ZeroPadding2D", "Cropping1D",
            "Cropping2D", "UpSampling1D", "UpSampling2D", "Rescaling", "Normalization"]

# recurrent, embedding, attention
from .attention import MultiHeadAttention  # noqa: E402
from .embedding import Embedding  # noqa: E402
from .recurrent import GRU, LSTM, Bidirectional, SimpleRNN  # noqa: E402

__all__ += ["SimpleRNN", "LSTM", "GRU", "Bidirectional", "Embedding", "MultiHeadAttention"]
