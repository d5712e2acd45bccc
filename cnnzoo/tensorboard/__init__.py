"""TensorBoard: HParams records of a run (``hparams``), how to open a run's logs
(``access``), serving them locally (``server``) and the Kubeflow ``Tensorboard`` resource
of a cluster run (``resource``).

May import: :mod:`cnnzoo.config`, :mod:`cnnzoo.models` (registry), :mod:`cnnzoo.storage`,
:mod:`cnnzoo.core`; TensorFlow only inside ``hparams.log_hparams`` (the training
process); never kfp.
"""
