"""Kubeflow pipelines over the cnnzoo components."""
