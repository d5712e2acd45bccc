"""cnnzoo.data."""
