"""The benchmark scripts run end to end in their quick modes and print their figures.

They are run as ``make bench`` and a GPU user would run them: as scripts in a fresh
process, from the repository root. Speed is not asserted here (it is what the scripts
print); what is checked is that they finish, and print well-formed, positive figures.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # benchmarks/ is a folder of the checkout, not installed
    sys.path.insert(0, str(REPO))


def _run(module: str, *args: str, timeout: int) -> str:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{module} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc.stdout


def _number(text: str) -> float:
    return float(text.replace(",", "").rstrip("x%"))


@pytest.mark.slow
def test_gpu_check_quick_prints_a_row_per_configuration():
    from cnnzoo.models.registry import list_models

    out = _run("benchmarks.gpu_check", "--quick", timeout=600)
    rows = {}
    for line in out.splitlines():
        cells = line.split()
        if len(cells) >= 2 and cells[0] in list_models() and cells[1] in ("float32", "bf16+XLA"):
            rows[(cells[0], cells[1])] = cells
    assert {m for m, _ in rows} == set(list_models())
    assert ("simple", "bf16+XLA") in rows
    for cells in rows.values():
        images_per_s, ms_per_step = _number(cells[2]), _number(cells[3])
        assert images_per_s > 0 and ms_per_step > 0, cells
    assert "failed" not in out


@pytest.mark.slow
def test_bench_quick_prints_every_section_and_the_final_figure():
    out = _run("benchmarks.bench", "--quick", "--skip-pipeline", timeout=900)
    assert out.splitlines()[0].startswith("machine: ")
    for section in ("== 1.", "== 2.", "== 3.", "== 4."):
        assert section in out
    feed = re.search(r"^ratio cnnzoo / notebook: ([\d.]+)x$", out, re.M)
    prep = re.search(
        r"^ratio PIL loop time / cnnzoo time \(best round of each\): ([\d.]+)x$", out, re.M
    )
    rounds = re.findall(
        r"^round \d: ingest [\d.]+ s \+ split [\d.]+ s vs PIL loop [\d.]+ s: "
        r"([\d.]+)x \(load average [\d.]+\)$",
        out,
        re.M,
    )
    assert len(rounds) == 2 and all(float(r) > 0 for r in rounds), out
    assert re.search(
        r"^== 3\. data preparation .*\[load average [\d.]+ [\d.]+ [\d.]+\]$", out, re.M
    ), out
    train = re.search(r"^simple\s+([\d,.]+)\s+([\d,.]+)\s+([\d.]+)x", out, re.M)
    # Training alternates the sides, round by round, each round with its load average.
    train_rounds = re.findall(
        r"^simple round (\d) \((notebook|cnnzoo) first\): notebook [\d,.]+ img/s "
        r"\(\d+ steps, [\d.]+ s, load average [\d.]+\), cnnzoo [\d,.]+ img/s "
        r"\(\d+ steps, [\d.]+ s, load average [\d.]+\): ([\d.]+)x$",
        out,
        re.M,
    )
    assert [(r, first) for r, first, _ in train_rounds] == [("1", "notebook"), ("2", "cnnzoo")]
    assert all(float(ratio) > 0 for _, _, ratio in train_rounds), out
    check = re.search(r"^sha256 check in split: [-+][\d.]+ s .*: ([\d.]+)x\)$", out, re.M)
    assert feed and prep and train and check, out
    assert float(prep.group(1)) > 0 and _number(train.group(3)) > 0
    targets = re.findall(r"^target (.+): (\d+\.\d\d)x, (met|MISSED)\b", out, re.M)
    assert len(targets) == 3, out  # feed, training, preparation (the pipeline is skipped)
    assert all(float(figure) > 0 for _, figure, _ in targets)
    assert re.search(r"^target orchestration <= 1.3x: not measured$", out, re.M), out
    assert re.search(
        r"^target training .*: [\d.]+x, (met|MISSED) \(simple: rounds [\d.]+x/[\d.]+x, "
        r"load average [\d.]+-[\d.]+\)$",
        out,
        re.M,
    ), out
    assert re.search(
        r"^target bench wall time <= 600 s on a quiet machine: \d+ s, (met|MISSED) ", out, re.M
    ), out
    assert re.search(
        r"^fixed cost per task: [\d.]+ s without TensorFlow .*, [\d.]+ s for train and evaluate",
        out,
        re.M,
    ), out
    assert re.search(r"^the 14-model run: 33 tasks, \d+ CPU s of fixed cost", out, re.M), out
    assert re.search(r"^notebook: image_dataset_from_directory\s+\d+\s+[\d,]+\s+[\d,]+-", out, re.M)
    final = out.strip().splitlines()[-1]
    m = re.fullmatch(r"input feed speedup vs notebook \(100px\): (\d+\.\d\d)x", final)
    assert m, final
    assert float(m.group(1)) > 0
    assert float(m.group(1)) == pytest.approx(float(feed.group(1)), abs=0.006)


@pytest.mark.slow
def test_bench_memory_prints_a_row_per_size():
    out = _run("benchmarks.memory", "--sizes", "60", "120", timeout=900)
    rows = [ln.split() for ln in out.splitlines() if re.match(r"^\d[\d,]* ", ln)]
    assert [r[0] for r in rows] == ["70", "130"], out  # + 2 test images per class
    for r in rows:
        cells = [c for c in r[1:] if c != "/"]
        figures = [_number(c) for c in cells[:8]]  # then the default budget's plan
        assert cells[8:10] in (["cached,", "cached"], ["streamed,", "cached"]), r
        assert "(under" in cells, r  # a tiny set stays under the 4096 MiB budget
        assert len(figures) == 8, r
        # seconds (printed to 0.1 s) may round to 0 on a tiny set; rates and memory may not
        assert all(f >= 0 for f in figures[:4:2]) and all(f > 0 for f in figures[1::2]), r
        assert figures[4] > 0 and figures[6] > 0, r
