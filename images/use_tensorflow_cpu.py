"""Make a pyproject.toml require ``tensorflow-cpu`` instead of ``tensorflow`` (CPU image).

The CPU image installs TensorFlow's CPU-only wheel (``tensorflow-cpu``, locked in
``images/requirements-cpu.txt``), but ``cnnzoo``'s published metadata requires the
``tensorflow`` distribution, so that ``pip install cnnzoo`` works everywhere. Both wheels
install the same ``tensorflow`` module, and pip has no way to let one distribution satisfy
a requirement on the other. So the CPU image's builder runs this on its own copy of
``pyproject.toml`` before it builds the wheel: the image's ``cnnzoo`` then declares what it
really has, and ``pip check`` holds it to that.

    python images/use_tensorflow_cpu.py pyproject.toml

Exactly one dependency may be ``tensorflow`` (any specifier); it keeps its specifier, and
nothing else in the file changes. Standard library only: it runs on the bare base image.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

TENSORFLOW_CPU = "tensorflow-cpu"
# A dependency string on its own line, e.g. `  "tensorflow==2.21.0",` (PEP 508: name first).
DEPENDENCY = re.compile(r'^(?P<indent>\s*)"tensorflow(?P<rest>\s*(?:==|>=|~=|<|\[|;|")[^\n]*)$')


def use_tensorflow_cpu(text: str) -> str:
    """Return ``text`` with its one ``tensorflow`` dependency renamed ``tensorflow-cpu``.

    Args:
        text: a pyproject.toml whose ``[project] dependencies`` list ``tensorflow`` once,
            one dependency per line.

    Returns:
        The same text with that line changed, and only that line.

    Raises:
        ValueError: not exactly one such line, or the result's dependencies differ from the
            input's in anything but that name.
    """
    lines = text.splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if DEPENDENCY.match(line.rstrip("\r\n"))]
    if len(hits) != 1:
        raise ValueError(f"expected one tensorflow dependency line, found {len(hits)}")
    (i,) = hits
    match = DEPENDENCY.match(lines[i].rstrip("\r\n"))
    ending = lines[i][len(lines[i].rstrip("\r\n")) :]
    lines[i] = f'{match["indent"]}"{TENSORFLOW_CPU}{match["rest"]}{ending}'
    result = "".join(lines)
    before = tomllib.loads(text)["project"]["dependencies"]
    after = tomllib.loads(result)["project"]["dependencies"]
    tf = _tf(before)
    renamed = [TENSORFLOW_CPU + d[len("tensorflow") :] if d in tf else d for d in before]
    if after != renamed or len(tf) != 1:
        raise ValueError("the tensorflow line is not the one dependency on tensorflow")
    return result


def _tf(dependencies: list[str]) -> list[str]:
    return [d for d in dependencies if re.match(r"tensorflow\s*(?:==|>=|~=|<|\[|;|$)", d)]


def main(argv: list[str]) -> int:
    """Rewrite the file named by ``argv[0]`` in place; one ``error:`` line on failure."""
    if len(argv) != 1:
        print("usage: use_tensorflow_cpu.py PYPROJECT", file=sys.stderr)
        return 2
    path = Path(argv[0])
    try:
        text = use_tensorflow_cpu(path.read_text())
        part = path.with_name(path.name + ".part")
        part.write_text(text)
        part.replace(path)
    except (OSError, ValueError, KeyError, tomllib.TOMLDecodeError) as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return 1
    print(f"{path}: tensorflow -> {TENSORFLOW_CPU}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
