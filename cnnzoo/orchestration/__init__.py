"""Orchestration: a study as a Kubeflow pipeline, run locally or on a cluster.

``study`` holds one study's parameters, ``placement`` the cluster placement
(``cluster.yaml``), ``tasks`` the task functions every KFP component body calls (and the
CLI steps too), ``cluster`` builds, compiles and submits the pipeline, ``kfp_runs`` reads
a submitted run back, ``local_run`` runs a study under ``kfp.local`` and ``docker`` its
container runner. The KFP components (``cnnzoo.components``, the repository's
``components/``) and the pipeline definition (``cnnzoo.pipelines``, ``pipelines/``)
belong to this layer.

May import: every library package below it. kfp, kfp-kubernetes and docker are imported
here (and by the CLI) only, inside the functions that need them.
"""
