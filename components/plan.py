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
    import json

    from cnnzoo.config.profile import profile_from_dict

    unknown = [m for m in models if m not in placements]
    if unknown:
        raise ValueError(f"unknown model configurations: {', '.join(map(str, unknown))}")
    seeds = profile_from_dict(json.loads(profile)).repeat_seeds()
    for name in models:
        print(f"[cnnzoo] plan {name}: pool {placements[name]['pool']}", flush=True)
    if len(seeds) > 1:
        print(f"[cnnzoo] plan: {len(seeds)} repeats, seeds {seeds}", flush=True)
    return [
        {**placements[name], "model": name, "seed": seed, "repeat": i}
        for name in models
        for i, seed in enumerate(seeds, 1)
    ]


def op(image: str):
    """The plan component on ``image``."""
    return make_component(plan, image)
