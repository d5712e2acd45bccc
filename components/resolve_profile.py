"""The resolve-profile step: the run's profile with its typed parameters applied.

The pipeline's typed parameters (``max_epochs``, ``img_size``, ``batch_size``, ``seed``,
``repeats``, ``weights``) are the profile's fields a person edits in the KFP UI; a value
that differs from the compiled-in ``profile`` wins, validated as ``--set`` is. Every
later step takes this step's output as its profile.
"""

from cnnzoo.components import make_component


def resolve_profile(
    profile: str,
    max_epochs: int,
    img_size: int,
    batch_size: int,
    seed: int,
    repeats: int,
    weights: str,
) -> str:
    """The resolved profile as JSON, the typed parameters applied."""
    from cnnzoo.orchestration import tasks

    return tasks.resolve_profile(profile, max_epochs, img_size, batch_size, seed, repeats, weights)


def op(image: str):
    """The resolve-profile component on ``image``."""
    return make_component(resolve_profile, image)
