"""The report step: fan-in of every model's evaluation into the comparison report."""

from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Output

from cnnzoo.components import make_component


def report(
    evaluations: Input[list[Artifact]],
    dataset: Input[Dataset],
    splits: Input[Dataset],
    data_uri: str,
    profile: str,
    tensorboard_root: str,
    output_uri: str,
    run_name: str,
    comparison: Output[Artifact],
    html: Output[HTML],
    markdown: Output[Markdown],
    tensorboard_resource: str = "",
):
    """Build the report from the evaluation JSONs; ``comparison`` holds all of its files
    (report.html, report.md, comparison.csv, comparison.json, and run-manifest.json: the
    artifacts it was built from, for ``cnnzoo report``), also copied to
    ``<output_uri>/report/`` when an output location is given. The run's logs root gets
    the HParams column declaration; the report says how to open its TensorBoard, and
    names the run's Kubeflow ``Tensorboard`` when the ``tensorboard-cr`` step made one
    (``tensorboard_resource``: that step's JSON output)."""
    import json
    import shutil
    from pathlib import Path

    from cnnzoo.reporting.discovery import ArtifactRef
    from cnnzoo.reporting.report import report_artifacts
    from cnnzoo.storage.layout import run_logs_root
    from cnnzoo.storage.outputs import export_folder
    from cnnzoo.tensorboard.hparams import write_hparams_config

    print("[cnnzoo] report: started", flush=True)
    resolved = json.loads(profile)
    context = {
        "run_name": run_name,
        "data_uri": data_uri,
        "profile": resolved,
        "seed": resolved.get("seed"),
        "tensorboard_root": run_logs_root(tensorboard_root, output_uri),
        "tensorboard_cr": json.loads(tensorboard_resource) if tensorboard_resource else {},
    }
    paths, results = report_artifacts(
        [ArtifactRef(Path(a.path), a.uri) for a in evaluations],
        ArtifactRef(Path(dataset.path), dataset.uri),
        ArtifactRef(Path(splits.path), splits.uri),
        comparison.path,
        context,
    )
    if context["tensorboard_root"]:
        write_hparams_config(context["tensorboard_root"])
    shutil.copyfile(paths["html"], html.path)
    shutil.copyfile(paths["markdown"], markdown.path)
    failed = [r.model for r in results if not r.ok]
    comparison.metadata.update(
        {"models": [r.model for r in results], "best": paths["best"], "failed": failed}
    )
    if output_uri:
        exported = export_folder(comparison.path, output_uri, "report")
        comparison.metadata["exported"] = exported
        print(f"[cnnzoo] report exported to {exported}", flush=True)
    print(
        f"[cnnzoo] report done: {len(results)} models, best {paths['best']}, "
        f"{len(failed)} failed" + (f" ({', '.join(failed)})" if failed else ""),
        flush=True,
    )


def op(image: str):
    """The report component on ``image``."""
    return make_component(report, image)
