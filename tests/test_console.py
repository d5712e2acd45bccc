"""The local run's console: which task lines it shows, with each step's elapsed time."""

from __future__ import annotations

import io

from cnnzoo.orchestration import local_run


def test_progress_shows_step_lines_with_elapsed_time(monkeypatch):
    clock = iter([100.0, 101.0, 103.5, 110.0, 152.25, 160.0, 165.5])
    monkeypatch.setattr(local_run.time, "monotonic", lambda: next(clock))
    log, console = io.StringIO(), io.StringIO()
    progress = local_run._Progress(log, console)
    progress.write(
        "[cnnzoo] ingest demo: started\n"  # 100.0
        "some TensorFlow chatter\n"
        "[cnnzoo] ingest done: 5 classes\n"  # 101.0
        "[cnnzoo] train mid: started\n"  # 103.5
        "[cnnzoo] train simple: started\n"  # 110.0
        "[cnnzoo] train mid: epoch 1/12 loss 1.6000 acc 0.2000 val_loss 1.6000 "
        "val_acc 0.2000 (2.1 s)\n"
        "[cnnzoo] train mid done: 12 epochs\n"  # 152.25
        "[cnnzoo] train simple FAILED: NaN loss\n"  # 160.0
        "[cnnzoo] report: started\n"  # 165.5
    )
    shown = [line.split("  ", 1)[1] for line in console.getvalue().splitlines()]
    assert shown == [
        "ingest demo: started",
        "ingest done: 5 classes [1.0 s]",
        "train mid: started",
        "train simple: started",
        "train mid: epoch 1/12 loss 1.6000 acc 0.2000 val_loss 1.6000 val_acc 0.2000 (2.1 s)",
        "train mid done: 12 epochs [48.8 s]",
        "train simple FAILED: NaN loss [50.0 s]",
        "report: started",
    ]
    assert "some TensorFlow chatter" in log.getvalue()
    assert "some TensorFlow chatter" not in console.getvalue()


def test_a_repeat_of_a_configuration_gets_its_own_elapsed_time(monkeypatch):
    clock = iter([10.0, 12.0, 20.0, 31.5])
    monkeypatch.setattr(local_run.time, "monotonic", lambda: next(clock))
    console = io.StringIO()
    progress = local_run._Progress(io.StringIO(), console)
    progress.write(
        "[cnnzoo] train mid/seed-42: started\n"  # 10.0
        "[cnnzoo] train mid/seed-7: started\n"  # 12.0
        "[cnnzoo] train mid/seed-42 done: 3 epochs\n"  # 20.0
        "[cnnzoo] train mid/seed-7 done: 2 epochs\n"  # 31.5
    )
    shown = [line.split("  ", 1)[1] for line in console.getvalue().splitlines()]
    assert shown[2:] == [
        "train mid/seed-42 done: 3 epochs [10.0 s]",
        "train mid/seed-7 done: 2 epochs [19.5 s]",
    ]
