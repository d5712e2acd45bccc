"""The ingest step: validate an image-folder dataset (folder, archive, gs:// or 'demo')."""

from kfp.dsl import Dataset, Output

from cnnzoo.components import make_component


def ingest(data_uri: str, fingerprint: str, dataset: Output[Dataset]):
    """Copy the usable images of ``data_uri`` and write their manifest into ``dataset``.

    ``fingerprint`` (the fingerprint step's listing hash of ``data_uri``) is not read: it
    is an input so that KFP's cache key of this step changes when the data does."""
    from cnnzoo.orchestration import tasks

    tasks.ingest(data_uri, fingerprint, dataset)


def op(image: str):
    """The ingest component on ``image``."""
    return make_component(ingest, image)
