"""cnnzoo.tensorboard."""
