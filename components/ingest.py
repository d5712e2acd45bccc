"""The ingest step: validate an image-folder dataset (folder, archive, gs:// or 'demo')."""

from kfp.dsl import Dataset, Output

from cnnzoo.components import make_component


def ingest(data_uri: str, fingerprint: str, dataset: Output[Dataset]):
    """Copy the usable images of ``data_uri`` and write their manifest into ``dataset``.

    ``fingerprint`` (the fingerprint step's listing hash of ``data_uri``) is not read: it
    is an input so that KFP's cache key of this step changes when the data does."""
    import cnnzoo.data.ingest

    print(f"[cnnzoo] ingest {data_uri}: started", flush=True)
    manifest = cnnzoo.data.ingest.ingest(data_uri, dataset.path)
    counts = {split: sum(per_class.values()) for split, per_class in manifest["counts"].items()}
    dataset.metadata.update(
        {
            "source": data_uri,
            "fingerprint": fingerprint,
            "classes": manifest["classes"],
            "counts": counts,
            "skipped": len(manifest["skipped"]),
        }
    )
    print(
        f"[cnnzoo] ingest done: {len(manifest['classes'])} classes, "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
        + f", {len(manifest['skipped'])} skipped",
        flush=True,
    )


def op(image: str):
    """The ingest component on ``image``."""
    return make_component(ingest, image)
