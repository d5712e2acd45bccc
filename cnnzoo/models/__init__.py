"""cnnzoo.models."""
