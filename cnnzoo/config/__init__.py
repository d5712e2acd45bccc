"""cnnzoo.config."""
