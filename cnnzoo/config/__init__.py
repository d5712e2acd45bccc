"""Config: the typed training profile (``Profile``), its named YAML files and overrides.

May import: :mod:`cnnzoo.models` (registry only), :mod:`cnnzoo.storage`,
:mod:`cnnzoo.core`. Never TensorFlow, Keras or kfp.
"""
