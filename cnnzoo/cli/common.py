"""What the ``cnnzoo`` subcommands share: the profile, ``--overwrite`` and KFP connection
arguments, and the check that a path is local where only a local path works."""

from __future__ import annotations

import argparse

from cnnzoo.config.profile import Profile, load_profile
from cnnzoo.core.errors import CnnzooError
from cnnzoo.orchestration.kfp_api import COOKIES_ENV, TOKEN_ENV, KfpConnection, connect


def add_profile_args(
    p: argparse.ArgumentParser,
    config_files: bool = True,
    default: str | None = "demo",
    default_help: str = "demo",
) -> None:
    """Add ``--profile``, ``--set KEY=VALUE`` (and ``--config YAML``) to a subcommand."""
    p.add_argument(
        "--profile", default=default, help=f"profile name or YAML path (default: {default_help})"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a profile field, e.g. --set max_epochs=1 (repeatable)",
    )
    if not config_files:
        return
    p.add_argument(
        "--config",
        dest="override_files",
        action="append",
        default=[],
        metavar="YAML",
        help="YAML file merged over the profile (repeatable)",
    )


def add_overwrite_arg(p: argparse.ArgumentParser, what: str = "DEST") -> None:
    """Add ``--overwrite``: replace ``what`` even if cnnzoo did not write it."""
    p.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace {what} even if it is not an earlier cnnzoo output of this command "
        "(its content is deleted); without it such a folder is refused",
    )


def local_path(path: str, what: str) -> str:
    """``path``, refused with a CnnzooError if it is a URI where only a local path works."""
    if "://" in str(path):
        raise CnnzooError(f"{path}: {what} must be a local path (a URI is not supported here)")
    return path


def load_profile_arg(ns: argparse.Namespace) -> Profile:
    """The profile a subcommand's ``--profile``/``--set``/``--config`` resolve to."""
    return load_profile(ns.profile, ns.overrides, ns.override_files)


def add_connection_args(
    p: argparse.ArgumentParser, host_required: bool = True, host_help: str | None = None
) -> None:
    """Add the KFP API options: ``--host``, ``--namespace``, ``--token``, ``--cookies``,
    ``--ca-cert`` (see :mod:`cnnzoo.orchestration.kfp_api`)."""
    p.add_argument(
        "--host",
        required=host_required,
        default=None,
        metavar="URL",
        help=host_help or "KFP endpoint, e.g. http://localhost:8080",
    )
    p.add_argument("--namespace", default=None, help="Kubeflow profile namespace (multi-user)")
    p.add_argument(
        "--token",
        default=None,
        help=f"bearer token for the KFP API (default: ${TOKEN_ENV}, else the in-cluster "
        "ServiceAccount token when present); prefer the variable: arguments show in ps",
    )
    p.add_argument(
        "--cookies",
        default=None,
        metavar="'NAME=VALUE'",
        help="session cookie of the auth proxy, e.g. 'authservice_session=...' "
        f"(default: ${COOKIES_ENV})",
    )
    p.add_argument("--ca-cert", default=None, metavar="FILE", help="CA bundle for an https host")


def connection_arg(ns: argparse.Namespace) -> KfpConnection:
    """The KFP endpoint and credentials the options of :func:`add_connection_args` name."""
    return connect(ns.host, ns.namespace, ns.token, ns.cookies, ns.ca_cert)
