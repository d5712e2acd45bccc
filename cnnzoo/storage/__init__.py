"""cnnzoo.storage."""
