"""Core: what every other package leans on, and nothing of cnnzoo's own above it.

The one user-facing error (:class:`~cnnzoo.core.errors.CnnzooError`) and the one helper
that puts a message on one line (``one_line``), environment-variable parsing (``env``),
path rules for foreign files (``paths``), process pools (``workers``) and validated YAML
configuration files (``yamlconfig``).

May import: the standard library and light third-party libraries (pydantic, PyYAML).
Never another cnnzoo package; never TensorFlow, Keras or kfp.
"""
