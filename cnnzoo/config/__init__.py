"""Config: the typed training profile (``Profile``), its named YAML files and overrides;
``train_output``: the schemas of a train output's ``config.yaml`` and ``history.json``.

May import: :mod:`cnnzoo.models` (registry only), :mod:`cnnzoo.storage`,
:mod:`cnnzoo.core`. Never TensorFlow, Keras or kfp.
"""
