"""The routing step: which node pool trains a model (``model_pools`` of cluster.yaml).

Tasks inside one ``dsl.ParallelFor`` share a spec, so per-model placement needs a branch:
this tiny step names the pool, and the pipeline's ``dsl.If``/``dsl.Else`` picks the train
task configured for it.
"""

from components import make_component


def pool_for_model(model_name: str, model_pools: dict, default_pool: str) -> str:
    """The pool of ``model_name``: its entry in ``model_pools``, else ``default_pool``."""
    return model_pools.get(model_name, default_pool)


def op(image: str):
    """The routing component on ``image``."""
    return make_component(pool_for_model, image)
