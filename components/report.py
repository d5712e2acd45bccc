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
    from cnnzoo.orchestration import tasks

    tasks.report(
        evaluations,
        dataset,
        splits,
        data_uri,
        profile,
        tensorboard_root,
        output_uri,
        run_name,
        comparison,
        html,
        markdown,
        tensorboard_resource,
    )


def op(image: str):
    """The report component on ``image``."""
    return make_component(report, image)
