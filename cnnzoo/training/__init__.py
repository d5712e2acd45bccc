"""Training: one configuration trained on a split, resumable, with its resolved config,
history and TensorBoard logs saved beside the model.

``train`` is the training loop (``train_model``), ``callbacks`` its Keras callbacks,
``checkpoint`` the per-epoch training state (local or ``gs://``).

May import: :mod:`cnnzoo.tensorboard`, :mod:`cnnzoo.config`, :mod:`cnnzoo.data`,
:mod:`cnnzoo.models`, :mod:`cnnzoo.storage`, :mod:`cnnzoo.core`; TensorFlow/Keras inside
functions. Never kfp, never :mod:`cnnzoo.evaluation`.
"""
