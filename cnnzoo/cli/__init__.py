"""CLI: the ``cnnzoo`` command. ``main`` holds the explicit command table; ``steps``,
``pipeline`` and ``report`` hold the commands, ``common`` what they share.

May import: every other package. Nothing imports it.
"""
