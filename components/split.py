"""The split step: seeded stratified split, decoded once into TFRecord shards."""

from kfp.dsl import Dataset, Input, Output

from cnnzoo.components import make_component


def split(dataset: Input[Dataset], profile: str, splits: Output[Dataset]):
    """Split the ingested ``dataset`` at ``profile``'s image size into ``splits``.

    ``profile`` is the resolved profile as JSON (``Profile.to_dict()``), resolved once by
    whoever submitted the run."""
    import json

    from cnnzoo.config.profile import profile_from_dict
    from cnnzoo.data.split import split_dataset

    prof = profile_from_dict(json.loads(profile))
    print(f"[cnnzoo] split at {prof.img_size}px: started", flush=True)
    info = split_dataset(
        dataset.path,
        splits.path,
        img_size=prof.img_size,
        seed=prof.seed,
        val_fraction=prof.val_fraction,
        test_fraction=prof.test_fraction,
    )
    counts = {name: part["count"] for name, part in info["splits"].items()}
    splits.metadata.update(
        {"classes": info["classes"], "img_size": info["img_size"], "counts": counts}
    )
    print("[cnnzoo] split done: " + ", ".join(f"{k} {v}" for k, v in counts.items()), flush=True)


def op(image: str):
    """The split component on ``image``."""
    return make_component(split, image)
