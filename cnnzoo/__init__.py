"""cnnzoo: train and compare fourteen CNN configurations as a Kubeflow pipeline.

The package does all the real work (data, models, training, evaluation, report);
the KFP components in ``components/`` only wire its functions together.
"""

__version__ = "0.1.0"
