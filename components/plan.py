"""The plan step: one record per training run, each with its placement from cluster.yaml.

``placements`` (every registered model's record, ``Placement.model_placements()``) is
compiled into the pipeline; ``models`` and ``profile`` are the run's parameters. Each
model gets ``profile.repeats`` records, one per training seed
(:func:`cnnzoo.config.profile.repeat_seeds`). The loop over the plan's output places each
run's train task from its record, so one train task serves every node pool.
"""

from cnnzoo.components import make_component


def plan(models: list, placements: dict, profile: str) -> list:
    """One record per (model, seed), model by model: its placement plus ``"model"``,
    ``"seed"`` and ``"repeat"`` (1-based)."""
    from cnnzoo.orchestration import tasks

    return tasks.plan(models, placements, profile)


def op(image: str):
    """The plan component on ``image``."""
    return make_component(plan, image)
