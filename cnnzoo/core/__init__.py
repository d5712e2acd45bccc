"""cnnzoo.core."""
