"""The pipeline definitions (``cnnzoo.pipelines``, installed from the ``pipelines/`` folder).

``cnnzoo.pipelines.cnn_comparison`` wires the components of ``cnnzoo.components`` into
the study's DAG. The default images live here, without importing kfp, so the CLI can
show them cheaply; the runners (``cnnzoo.orchestration.local_run``,
``cnnzoo.orchestration.cluster``) import this
package, never the reverse.
"""

from cnnzoo import __version__

IMAGE_REGISTRY = "ghcr.io/example/cnnzoo"
DEFAULT_IMAGE = f"{IMAGE_REGISTRY}/cnnzoo:{__version__}"
DEFAULT_GPU_IMAGE = f"{IMAGE_REGISTRY}/cnnzoo-gpu:{__version__}"
