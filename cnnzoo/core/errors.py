"""The one exception type users see as a one-line ``error: ...`` message.

Library code raises :class:`CnnzooError` for every problem caused by input
(bad data, bad config, missing files); the CLI prints it as a single line and
exits non-zero instead of showing a traceback. Anything else is a bug.
"""


class CnnzooError(Exception):
    """A user-facing error: the message names what is wrong and where."""
