"""Evaluation: one trained model measured on the test split, and the statistics of
evaluations.

``evaluate`` writes the evaluation record (``evaluate_model``), ``records`` is that
record's schema (read by the report), ``stats`` the intervals and paired tests.

May import: :mod:`cnnzoo.config`, :mod:`cnnzoo.data`, :mod:`cnnzoo.models`,
:mod:`cnnzoo.storage`, :mod:`cnnzoo.core`; TensorFlow only inside ``evaluate``'s
functions (``records`` and ``stats`` never load it). Never kfp, never
:mod:`cnnzoo.training`.
"""
