"""cnnzoo.training."""
