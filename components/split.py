"""The split step: seeded stratified split, decoded once into TFRecord shards."""

from kfp.dsl import Dataset, Input, Output

from cnnzoo.components import make_component


def split(dataset: Input[Dataset], profile: str, splits: Output[Dataset]):
    """Split the ingested ``dataset`` at ``profile``'s image size into ``splits``.

    ``profile`` is the resolved profile as JSON (``Profile.to_dict()``), resolved once by
    whoever submitted the run."""
    from cnnzoo.orchestration import tasks

    tasks.split(dataset, profile, splits)


def op(image: str):
    """The split component on ``image``."""
    return make_component(split, image)
