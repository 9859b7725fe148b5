"""The database URL options, one definition for every command.

A URL is read from (in order) `--source`/`--target`, `--source-file`/`--target-file`, or
`SOURCE_DATABASE_URL`/`TARGET_DATABASE_URL`. The file and the environment are the documented
ways: a password given in argv is visible to every local user in `ps` and ends up in shell
history, so it still works but is warned about. The CA options switch TLS to `verify-full`.
"""

from __future__ import annotations

import argparse

from loaders.dsn import CA_FLAGS, ENV_VARS, URL_FILE_FLAGS, DatabaseUrl, url_from, url_given

CA_HELP = {
    "source": "CA certificate file of the source (Supabase: download it from the project's Database settings); "
              "connect with sslmode=verify-full",
    "target": "CA bundle file of the target (RDS: global-bundle.pem); connect with sslmode=verify-full",
}


def add_role_arguments(parser: argparse.ArgumentParser, role: str, *, help: str | None = None,
                       ca: bool = True) -> None:
    """`--ROLE URL`, `--ROLE-file FILE` (exclusive) and, unless the command defines its own, the CA option."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(f"--{role}", metavar="URL",
                       help=(help or f"{role} URL") + f" (default: ${ENV_VARS[role]}; a password here is visible in ps)")
    group.add_argument(URL_FILE_FLAGS[role], metavar="FILE", dest=f"{role}_file",
                       help=f"read the {role} URL from this file (first non-comment line; keep it chmod 600)")
    if ca:
        parser.add_argument(CA_FLAGS[role], metavar="FILE", dest=ca_dest(role), help=CA_HELP[role])


def ca_dest(role: str) -> str:
    """`source_ca` / `ca_bundle`: argparse's own name for the flag, which `up` and `drift` already use."""
    return CA_FLAGS[role].lstrip("-").replace("-", "_")


def add_url_arguments(parser: argparse.ArgumentParser) -> None:
    """Source and target, for commands that need both (copy, verify, migrate)."""
    add_role_arguments(parser, "source")
    add_role_arguments(parser, "target")


def role_url(args: argparse.Namespace, role: str) -> DatabaseUrl:
    return url_from(getattr(args, role, None), role, file=getattr(args, f"{role}_file", None),
                    ca=getattr(args, ca_dest(role), None))


def source_url(args: argparse.Namespace) -> DatabaseUrl:
    return role_url(args, "source")


def target_url(args: argparse.Namespace) -> DatabaseUrl:
    return role_url(args, "target")


def role_given(args: argparse.Namespace, role: str) -> bool:
    """Whether a URL for `role` was given any of the three ways (for commands where it is optional)."""
    return url_given(getattr(args, role, None), role, file=getattr(args, f"{role}_file", None))
