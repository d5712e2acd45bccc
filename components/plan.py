"""The plan step: the chosen model names, each with its train placement from cluster.yaml.

``placements`` (every registered model's record, ``Placement.model_placements()``) is
compiled into the pipeline; ``models`` is the run's parameter. The loop over the plan's
output places each model's train task from its record, so one train task serves every
node pool.
"""

from cnnzoo.components import make_component


def plan(models: list, placements: dict) -> list:
    """One record per model, in order: its placement plus ``"model": <name>``."""
    unknown = [m for m in models if m not in placements]
    if unknown:
        raise ValueError(f"unknown model configurations: {', '.join(map(str, unknown))}")
    for name in models:
        print(f"[cnnzoo] plan {name}: pool {placements[name]['pool']}", flush=True)
    return [{**placements[name], "model": name} for name in models]


def op(image: str):
    """The plan component on ``image``."""
    return make_component(plan, image)
