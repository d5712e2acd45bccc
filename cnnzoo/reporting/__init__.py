"""cnnzoo.reporting."""
