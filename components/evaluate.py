"""The evaluate step: test-set metrics and confusion matrix of one trained model."""

from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from cnnzoo.components import make_component


def evaluate(
    model: Input[Model],
    splits: Input[Dataset],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
):
    """Evaluate ``model`` on the test split; ``evaluation`` is the evaluation JSON.

    ``metrics`` gets the test accuracy with its 95% interval (``test_accuracy_ci95_low``,
    ``_high``), the loss, train accuracy, gap, parameters and the training seed."""
    from cnnzoo.orchestration import tasks

    tasks.evaluate(model, splits, evaluation, metrics, confusion)


def op(image: str):
    """The evaluate component on ``image``."""
    return make_component(evaluate, image)
