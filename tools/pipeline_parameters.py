"""Write ``docs/pipeline-parameters.md``: the pipeline's top-level parameters (name, type,
default, meaning), generated from the compiled pipeline's signature.

Run it with the project venv after changing the pipeline's parameters or their help
(``cnnzoo.orchestration.study.PARAMETER_HELP``)::

    .venv/bin/python tools/pipeline_parameters.py

``tests/test_pipeline_compile.py`` fails when the page and the pipeline disagree.
"""

from __future__ import annotations

from pathlib import Path

from cnnzoo.orchestration.cluster import parameters_reference

PAGE = Path(__file__).resolve().parent.parent / "docs" / "pipeline-parameters.md"


def main() -> None:
    PAGE.write_text(parameters_reference(), encoding="utf-8")
    print(f"wrote {PAGE}")


if __name__ == "__main__":
    main()
