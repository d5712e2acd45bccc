"""cnnzoo.cli."""
