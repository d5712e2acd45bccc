"""cnnzoo.evaluation."""
