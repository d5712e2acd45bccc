"""cnnzoo.orchestration."""
