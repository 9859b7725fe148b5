"""`up`, `preview`, `destroy`, `outputs`: the Pulumi stack, then the migration onto it."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import anyio
import structlog

from automation import stack as pulumi_stack
from automation.app_password import secrets_manager_store
from automation.commands.migrate import migrate_and_report
from automation.commands.repair import REPAIR_HELP, repair
from automation.commands.sync import add_start_arguments, start_and_report
from automation.commands.options import add_pipeline_arguments, add_schema_arguments, schema_options
from automation.plan import build_migration_plan, render_plan
from automation.commands.urls import add_role_arguments, role_given, source_url
from infra.config import ACCESS_WINDOW_KEY, AccessWindow, access_window, load_settings, raw_from_pulumi
from loaders.dsn import DatabaseUrl
from loaders.errors import MigrationError
from loaders.redaction import MASK

log = structlog.get_logger(stage="stack")

STACK_HELP = "Pulumi stack name (default: dev; its config is Pulumi.<stack>.yaml)"
ENV_HELP = ("Environment: PULUMI_BACKEND_URL (default: file backend in the project directory), "
            "PULUMI_CONFIG_PASSPHRASE (required), AWS_PROFILE / AWS_* credentials, SOURCE_DATABASE_URL.")


def _add_stack(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stack", default="dev", help=STACK_HELP)


def _show_outputs(outputs: dict, *, show_secrets: bool) -> dict:
    return {k: (v if show_secrets or k not in pulumi_stack.SECRET_OUTPUTS else MASK) for k, v in outputs.items()}


def cmd_outputs(args: argparse.Namespace) -> int:
    pulumi_stack.check_prerequisites(aws=False)
    stack = pulumi_stack.open_stack(args.stack, create=False)
    outputs = pulumi_stack.plain_outputs(stack.outputs())
    print(json.dumps(_show_outputs(outputs, show_secrets=args.show_secrets), indent=2, default=str))
    return 0


def cmd_destroy(args: argparse.Namespace) -> int:
    pulumi_stack.check_prerequisites(aws=True)
    stack = pulumi_stack.open_stack(args.stack, create=False)
    pulumi_stack.confirm(f"Destroy every resource of stack {args.stack!r}?", yes=args.yes)
    stack.destroy(on_event=pulumi_stack.log_engine_event)
    log.info("destroyed", stack=args.stack)
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    pulumi_stack.check_prerequisites(aws=True)
    stack = pulumi_stack.open_stack(args.stack, create=True)
    result = stack.preview(on_event=pulumi_stack.log_engine_event)
    log.info("preview", changes=dict(result.change_summary))
    if role_given(args, "source"):
        plan = anyio.run(build_migration_plan, source_url(args), schema_options(args))
        render_plan(plan)
    return 0


def _apply(stack: Any, ops: pulumi_stack.StackOps, args: argparse.Namespace) -> None:
    """Preview, confirm, and the `up` (applied now when it carries a confirmed major upgrade)."""
    if not args.yes:
        stack.preview(on_event=pulumi_stack.log_engine_event)
    pulumi_stack.confirm(f"Apply these changes to stack {args.stack!r}?", yes=args.yes)
    upgrade = pulumi_stack.planned_major_upgrade(stack)
    if upgrade is None:
        ops.up()
        return
    pulumi_stack.confirm(pulumi_stack.describe_major_upgrade(upgrade), yes=args.allow_major_upgrade,
                         flag="--allow-major-upgrade")
    pulumi_stack.upgrade_major(ops)


def _migrate(args: argparse.Namespace, stack: Any, source: DatabaseUrl, *, cidr: str | None) -> int:
    """Preflight (one line naming the access choices when the target is unreachable), then migrate."""
    outputs = pulumi_stack.plain_outputs(stack.outputs())
    conn = pulumi_stack.connection_from_outputs(outputs, ca_bundle=args.ca_bundle)
    pulumi_stack.preflight(conn.host, conn.port, args.access, cidr=cidr,
                           wait_seconds=pulumi_stack.WINDOW_WAIT_SECONDS if cidr else 0.0)
    target = pulumi_stack.master_url(conn)
    if args.repair:
        return repair(source, target, args)
    store = secrets_manager_store(args.stack, args.app_role) if args.app_role else None
    run = start_and_report if args.online else migrate_and_report
    return run(source, target, args, out_dir=pulumi_stack.PROJECT_DIR / "reports" / args.stack, store=store)


def refuse_conflicts(args: argparse.Namespace) -> None:
    """`--online` replaces the migration; what only makes sense for `migrate` is refused before anything runs."""
    if args.online and args.repair:
        raise MigrationError("--online and --repair both given: --repair re-copies differing ranges of a finished "
                             "migration, --online starts replication", "run `up --repair` and `up --online` separately")
    if args.online and not role_given(args, "source") and not args.local:
        raise MigrationError("--online needs a source to replicate from", "pass --source URL (or SOURCE_DATABASE_URL)")


def cmd_up(args: argparse.Namespace) -> int:
    refuse_conflicts(args)
    if args.local:
        from automation.local import run_local

        return run_local(args)
    pulumi_stack.check_prerequisites(aws=True)
    stack = pulumi_stack.open_stack(args.stack, create=True)
    ops = pulumi_stack.stack_ops(stack)
    pulumi_stack.close_stale_window(ops, args.stack)
    source = source_url(args) if role_given(args, "source") else None
    if args.access == "window" and source:
        cidr = pulumi_stack.window_cidr(args.access_cidr)
        _apply(stack, ops, args)  # provisioning first: the window then changes only the rule and public access
        window = access_window_for(stack, cidr)
        print(f"access window: opens {window.describe()} on stack {args.stack!r} for this run only: from now "
              "until the migration ends (success, failure or Ctrl-C), then a second `up` removes it", file=sys.stderr)
        pulumi_stack.confirm("Open this access window?", yes=args.yes)
        return pulumi_stack.through_window(ops, cidr, lambda: _migrate(args, stack, source, cidr=cidr),
                                           stack_name=args.stack)
    if args.access == "window":
        log.warning("--access window opens nothing without a migration to run", stack=args.stack,
                    fix="pass --source URL (or SOURCE_DATABASE_URL)")
    _apply(stack, ops, args)
    if not source:
        outputs = pulumi_stack.plain_outputs(stack.outputs())
        log.info("provisioned", stack=args.stack, note="no --source given: infrastructure only")
        print(json.dumps(_show_outputs(outputs, show_secrets=args.show_secrets), indent=2, default=str))
        return 0
    return _migrate(args, stack, source, cidr=None)


def access_window_for(stack: Any, cidr: str) -> AccessWindow:
    """What the program will open, computed by the program's own rule from the stack's config."""
    raw = raw_from_pulumi({k: v.value for k, v in stack.get_all_config().items() if not v.secret})
    return access_window(load_settings({**raw, ACCESS_WINDOW_KEY: cidr}))  # type: ignore[return-value]


def register(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser("up", help="provision RDS with Pulumi, then migrate the source onto it",
                        description="Provision (or update) the stack, then run schema → data → verify. " + ENV_HELP)
    _add_stack(up)
    up.add_argument("--local", action="store_true",
                    help="no AWS, no Pulumi: embedded PostgreSQL stands in for RDS (and for the source, without --source)")
    up.add_argument("--yes", action="store_true", help="apply without asking")
    up.add_argument("--ca-bundle", help="RDS CA bundle file: connect with sslmode=verify-full")
    add_role_arguments(up, "source", help="Supabase URL (direct or session pooler, not port 6543)")
    up.add_argument("--show-secrets", action="store_true", help="print the backend's password instead of ***")
    up.add_argument("--keep-running", action="store_true", help="with --local: leave the local servers running")
    up.add_argument("--access", choices=pulumi_stack.ACCESS_CHOICES, default=pulumi_stack.DEFAULT_ACCESS,
                    help="how this machine reaches the new database for the migration: window = open it to this "
                         "machine's address (a /32 or /128 rule, plus public access where the subnets allow it) "
                         "for this run only, closed afterwards even on failure or Ctrl-C; vpc = this machine runs "
                         "inside the VPC, nothing is opened; none = as the stack says (default: %(default)s)")
    up.add_argument("--access-cidr", metavar="ADDRESS",
                    help=f"with --access window: this machine's address (default: detected from {pulumi_stack.CHECKIP_URL})")
    up.add_argument("--allow-major-upgrade", action="store_true",
                    help="confirm a major engine upgrade (engineVersion raised) without being asked; --yes alone does not")
    add_pipeline_arguments(up, app_role_default="app_backend")
    up.add_argument("--rotate-app-password", action="store_true",
                    help="give the app role a new password (and rewrite backend.env in the same step); without it "
                         "the role keeps APP_ROLE_PASSWORD or the recorded one (Secrets Manager, or .local/ with --local)")
    up.add_argument("--repair", action="store_true", help=REPAIR_HELP)
    up.add_argument("--fresh", action="store_true",
                    help="start over on a target that already has a verified migration: drop what the tool created "
                         "there — and only that — then migrate again (as `migrate --fresh`; --yes also confirms this)")
    online = up.add_argument_group("online migration (sync)")
    online.add_argument("--online", action="store_true",
                        help="after provisioning, run `sync start` instead of `migrate`: copy inside a logical slot's "
                             "snapshot, then leave replication running; then `sync status`, `sync cutover`")
    add_start_arguments(online)
    up.set_defaults(handler=cmd_up)

    preview = sub.add_parser("preview", help="Pulumi preview plus the migration plan; changes nothing",
                             description="Preview infrastructure changes and, with --source, what the migration would do. " + ENV_HELP)
    _add_stack(preview)
    add_role_arguments(preview, "source", help="Supabase URL to plan the migration from")
    add_schema_arguments(preview)
    preview.set_defaults(handler=cmd_preview)

    destroy = sub.add_parser("destroy", help="delete the stack's resources", description=ENV_HELP)
    _add_stack(destroy)
    destroy.add_argument("--yes", action="store_true", help="destroy without asking")
    destroy.set_defaults(handler=cmd_destroy)

    outputs = sub.add_parser("outputs", help="print the stack's outputs (secrets masked)", description=ENV_HELP)
    _add_stack(outputs)
    outputs.add_argument("--show-secrets", action="store_true", help="print secret outputs in clear")
    outputs.set_defaults(handler=cmd_outputs)
