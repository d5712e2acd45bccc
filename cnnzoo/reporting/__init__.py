"""Reporting: one comparison over all evaluations — ranking, verdict, tables, plots and
the HTML page.

``report`` ranks and writes the report folder, ``discovery`` finds a finished run's
evaluations (the run manifest), ``columns`` the results table, ``verdict`` what the
comparison concludes, ``render`` the Markdown/CSV/JSON/console texts, ``html`` and
``templates/`` the page, ``plots`` the figures.

May import: :mod:`cnnzoo.evaluation` (records, stats), :mod:`cnnzoo.tensorboard`
(access), :mod:`cnnzoo.config`, :mod:`cnnzoo.data` (artifacts), :mod:`cnnzoo.models`
(registry), :mod:`cnnzoo.storage`, :mod:`cnnzoo.core`. Never TensorFlow, Keras or kfp.
"""
