"""Package data ``cnnzoo.configs``: the training profiles (``profiles/*.yaml``) and the
default cluster placement (``cluster.yaml``). Read through
``cnnzoo.config.profile.config_dir()``."""
