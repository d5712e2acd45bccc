"""The fingerprint step: a hash of the listing behind the data URI, for ingest's cache key.

The pipeline runs this step uncached on every run and passes its output to ingest, so a
cached ingest is reused only while the data behind the URI is unchanged.
"""

from cnnzoo.components import make_component


def fingerprint(data_uri: str) -> str:
    """The fingerprint of ``data_uri`` (``cnnzoo.data.fingerprint.data_fingerprint``)."""
    from cnnzoo.orchestration import tasks

    return tasks.fingerprint(data_uri)


def op(image: str):
    """The fingerprint component on ``image``."""
    return make_component(fingerprint, image)
