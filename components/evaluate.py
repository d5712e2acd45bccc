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
    from cnnzoo.evaluation.evaluate import evaluate_model

    print(f"[cnnzoo] evaluate {model.metadata.get('model', '')}: started", flush=True)
    result = evaluate_model(model.path, splits.path, evaluation.path)
    name = result["model"]
    evaluation.metadata.update(
        {"model": name, "status": result["status"], "seed": result.get("seed")}
    )
    if result["status"] != "ok":
        print(f"[cnnzoo] evaluate {name}: no trained model ({result.get('error')})", flush=True)
        return
    for key in ("test_accuracy", "test_loss", "train_accuracy", "gap", "total_params"):
        metrics.log_metric(key, result[key])
    if result.get("test_accuracy_ci"):  # the 95% Wilson interval (cnnzoo.evaluation.stats)
        low, high = result["test_accuracy_ci"]
        metrics.log_metric("test_accuracy_ci95_low", low)
        metrics.log_metric("test_accuracy_ci95_high", high)
    if result.get("seed") is not None:
        metrics.log_metric("seed", result["seed"])
    confusion.log_confusion_matrix(result["classes"], result["confusion_matrix"])
    print(
        f"[cnnzoo] evaluate {name} done: test_accuracy {result['test_accuracy']:.4f}, "
        f"gap {result['gap']:+.4f}",
        flush=True,
    )


def op(image: str):
    """The evaluate component on ``image``."""
    return make_component(evaluate, image)
