"""Storage: where bytes go and how they get there, never what they mean.

``layout`` is the one home of every artifact file name and output path rule; ``local``
writes local files and folders atomically under one-writer locks and ownership markers;
``gcs`` is the Cloud Storage transport only; ``outputs`` is the commit-marker protocol
for outputs on ``gs://`` (and the copy of a result to a run's output location);
``logsync`` mirrors TensorBoard logs to and from ``gs://``; ``tfrecord`` writes TFRecord
shards and TensorBoard event files without TensorFlow.

May import: :mod:`cnnzoo.core`, google-cloud-storage. Never TensorFlow, Keras or kfp.
"""
