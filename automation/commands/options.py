"""Arguments shared by `schema`, `migrate` and `up`, so each option means the same everywhere."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from automation.commands.copy import add_copy_arguments, copy_options
from loaders.data.checksum import DEFAULT_PROOF, Proof
from loaders.migrate import MigrateOptions
from loaders.schema.stage import SchemaOptions
from loaders.schema.clean import RLS_MODES

APP_ROLE_PASSWORD_ENV = "APP_ROLE_PASSWORD"


def add_schema_arguments(parser: argparse.ArgumentParser, *, app_role_default: str | None = None) -> None:
    parser.add_argument("--migrations", type=Path, metavar="DIR", help="apply this folder's *.sql files instead of a dump")
    parser.add_argument("--rls", choices=RLS_MODES, default="strip",
                        help="strip policies and RLS (default) or keep them with an auth.uid() shim")
    parser.add_argument("--skip-invalid", action="store_true", help="skip statements that don't parse, and report them")
    parser.add_argument("--skip", action="append", default=[], metavar="NAME|FILE:LINE",
                        help="leave out this statement (by FILE:LINE) or object (by schema.name); repeatable, reported")
    parser.add_argument("--app-role", metavar="NAME", default=app_role_default,
                        help=f"least-privilege login role for the backend (password from ${APP_ROLE_PASSWORD_ENV})"
                        + (f"; default {app_role_default}" if app_role_default else ""))
    parser.add_argument("--no-diff", action="store_true", help="skip the schema diff against the source")


def schema_options(args: argparse.Namespace, *, app_role_password: str | None = None) -> SchemaOptions:
    password = app_role_password or (os.environ.get(APP_ROLE_PASSWORD_ENV) if args.app_role else None)
    return SchemaOptions(
        migrations=args.migrations, rls=args.rls, skip_invalid=args.skip_invalid, app_role=args.app_role,
        app_role_password=password, diff=not args.no_diff, skip=tuple(args.skip),
    )


def add_pipeline_arguments(parser: argparse.ArgumentParser, *, app_role_default: str | None = None) -> None:
    """Everything `migrate` takes besides the URLs: schema, copy and verification options."""
    add_schema_arguments(parser, app_role_default=app_role_default)
    add_copy_arguments(parser)
    add_proof_argument(parser)
    parser.add_argument("--report", type=Path, metavar="FILE", help="write the JSON report here")


def migrate_options(args: argparse.Namespace, *, app_role_password: str | None = None) -> MigrateOptions:
    return MigrateOptions(schema=schema_options(args, app_role_password=app_role_password),
                          copy=copy_options(args), proof=args.proof)


def add_proof_argument(parser: argparse.ArgumentParser) -> None:
    """`--verify` everywhere a run ends in proof; `--no-checksums` stays as the old spelling of counts."""
    parser.add_argument("--verify", dest="proof", type=Proof, choices=list(Proof), default=DEFAULT_PROOF,
                        metavar="{full,fast,counts}",
                        help="proof level: full (hash of every row's text), fast (default: per-column type "
                             "hashes where they mean equal text, text elsewhere), counts (row counts only)")
    parser.add_argument("--no-checksums", dest="proof", action="store_const", const=Proof.COUNTS,
                        help="same as --verify counts")
