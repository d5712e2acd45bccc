"""Shared fixtures: small generated datasets and the quiet TensorFlow environment."""

import os
import signal

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

# A shell without job control starts a background command (`make test &` in a script)
# with SIGINT ignored, and every process started from it inherits that: the tests that
# stop a run, a TensorBoard or an ingest with SIGINT (Ctrl-C) would see it ignored. With
# a handler here instead, the processes the tests start get SIGINT's default again
# (exec resets handlers, not an ignore).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# --- tiny generated datasets (shared by every test tier) --------------------------------

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_raw_dataset(tmp_path_factory):
    """A tiny demo image folder: 5 classes x 6 train x 2 val images at 40 px."""
    from cnnzoo.data.demo import make_demo_dataset

    return make_demo_dataset(
        tmp_path_factory.mktemp("tiny") / "raw", per_class_train=6, per_class_test=2, size=40
    )


@pytest.fixture(scope="session")
def tiny_split(tmp_path_factory, tiny_raw_dataset):
    """``tiny_raw_dataset`` ingested and split at 72 px (Xception needs 71); the split dir."""
    from cnnzoo.data.ingest import ingest
    from cnnzoo.data.split import split_dataset

    base = tmp_path_factory.mktemp("tiny_split")
    ingest(str(tiny_raw_dataset), base / "ingested")
    split_dataset(base / "ingested", base / "split", img_size=72, seed=42)
    return base / "split"


@pytest.fixture(scope="session")
def trained_simple(tmp_path_factory, tiny_split):
    """``simple`` trained once on ``tiny_split`` (notebook profile, 2 epochs of batch 8,
    seed 7): the trained model the evaluation, CLI and task tests read. Read it only;
    copy it (``shutil.copytree``) to change it."""
    from helpers import notebook_profile

    from cnnzoo.training.train import train_model

    out = tmp_path_factory.mktemp("trained") / "simple"
    profile = notebook_profile(["batch_size=8", "max_epochs=2", "seed=7"])
    hist = train_model("simple", tiny_split, out, profile)
    assert hist["status"] == "ok", hist
    return out


# --- Cloud Storage emulator (tests/gcs_fixtures.py) -------------------------------------

from gcs_fixtures import gcs_emulator, gcs_emulator_server  # noqa: E402, F401
