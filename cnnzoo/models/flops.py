"""What a built model costs: FLOPs per image, counted from its layers' shapes.

A multiply-add is 2 FLOPs. Convolutions (plain, depthwise, separable) and dense layers
are counted; the rest (activations, pooling, normalisation) is left out, as is usual.
The registry's :attr:`~cnnzoo.models.registry.ModelSpec.macs` figures are
``count_flops(model)[0] / 2`` at 100 px (tests/test_models.py keeps them so), and
``benchmarks/gpu_check.py`` divides its achieved FLOP/s by :func:`count_flops`'s
training figure for the model FLOP utilisation.

Keras is used on the built model only: this module imports nothing at load time.
"""

from __future__ import annotations

import math


def _flat_layers(model):
    """Layers in topological order, nested models (a pretrained base) expanded."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _flat_layers(layer)
        else:
            yield layer


def forward_flops(layer) -> int:
    """FLOPs of one image through ``layer`` (Conv, depthwise/separable Conv, Dense; else 0)."""
    from keras import layers

    def spatial(shape) -> int:
        return math.prod(int(d) for d in shape[1:-1])

    if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.SeparableConv2D)):
        kh, kw = layer.kernel_size
        cin = int(layer.input.shape[-1])
        out_pixels = spatial(layer.output.shape)
        if isinstance(layer, layers.DepthwiseConv2D):
            return 2 * kh * kw * cin * layer.depth_multiplier * out_pixels
        if isinstance(layer, layers.SeparableConv2D):
            mid = cin * layer.depth_multiplier
            return 2 * out_pixels * (kh * kw * mid + mid * layer.filters)
        return 2 * kh * kw * (cin // layer.groups) * layer.filters * out_pixels
    if isinstance(layer, layers.Dense):
        # Dense acts on the last axis; any other non-batch axes multiply the work.
        positions = math.prod(int(d) for d in layer.output.shape[1:-1])
        return 2 * int(layer.input.shape[-1]) * layer.units * positions
    return 0


def count_flops(model) -> tuple[int, int]:
    """Forward FLOPs per image and training FLOPs per image of ``model`` as it is set.

    Training counts, per layer, the forward pass, the weight gradients if the layer has
    trainable weights, and the input gradients if any earlier layer trains.
    """
    forward = train = 0
    upstream_trains = False
    for layer in _flat_layers(model):
        f = forward_flops(layer)
        trains = bool(layer.trainable_weights)
        forward += f
        train += f * (1 + int(trains) + int(upstream_trains))
        upstream_trains = upstream_trains or trains
    return forward, train
