"""Data: from a user's images to training-ready shards.

``sources`` resolves a data URI (folder, archive, ``gs://``, ``demo``), ``demo`` makes
the built-in demo set, ``fingerprint`` hashes what is behind a URI, ``ingest`` validates
every image, ``decoded`` is the kept-decode format ingest hands to ``split``, ``split``
writes the seeded stratified split as TFRecord shards, and ``loader`` reads them back as
a ``tf.data`` pipeline for training and evaluation; ``artifacts`` declares the schemas
of ``manifest.json`` and ``split.json`` every reader checks.

May import: :mod:`cnnzoo.storage`, :mod:`cnnzoo.core`. TensorFlow only in ``loader``
(``ingest`` and ``split`` never load it); never kfp.
"""
