"""The Pulumi side of the driver: prerequisites, the stack, its outputs → a connection.

The driver runs *this project's directory* through the Automation API's LocalWorkspace,
so `pulumi preview` and `python -m automation up` always evaluate the same program.
Everything a fresh machine lacks (CLI, passphrase, AWS credentials) is checked first and
reported as one line with the fix, before Pulumi gets a chance to print a stack trace.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from loaders.dsn import DatabaseUrl
from loaders.errors import MigrationError
from loaders.redaction import register_secret

PROJECT_DIR = Path(__file__).resolve().parent.parent
SECRET_OUTPUTS = ("masterPassword", "databaseUrl")
log = structlog.get_logger(stage="stack")


def backend_url() -> str:
    """Local file state in the project directory unless PULUMI_BACKEND_URL says otherwise."""
    return os.environ.get("PULUMI_BACKEND_URL") or f"file://{PROJECT_DIR}"


def require_cli() -> str:
    path = shutil.which("pulumi")
    if path is None:
        raise MigrationError(
            "the pulumi CLI is not installed (not found on PATH)",
            "install it (https://www.pulumi.com/docs/install/) and make sure `pulumi version` works, "
            "or run `python -m automation up --local` to try the pipeline without AWS",
        )
    return path


def require_passphrase() -> None:
    if not (os.environ.get("PULUMI_CONFIG_PASSPHRASE") is not None or os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE")):
        raise MigrationError(
            "PULUMI_CONFIG_PASSPHRASE is not set; the local backend encrypts stack secrets with it",
            "export PULUMI_CONFIG_PASSPHRASE=… (or PULUMI_CONFIG_PASSPHRASE_FILE=path) and keep it safe",
        )


def require_aws_credentials() -> None:
    import boto3

    credentials = boto3.Session().get_credentials()
    if credentials is None:
        raise MigrationError(
            "no AWS credentials found",
            "set AWS_PROFILE (after `aws sso login`) or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        )


def check_prerequisites(*, aws: bool) -> None:
    require_cli()
    require_passphrase()
    if aws:
        require_aws_credentials()


def open_stack(name: str, *, create: bool) -> Any:
    """Select (or create) `name` over this project's directory with the file backend."""
    from pulumi import automation as auto

    options = auto.LocalWorkspaceOptions(env_vars={"PULUMI_BACKEND_URL": backend_url()})
    try:
        if create:
            return auto.create_or_select_stack(name, work_dir=str(PROJECT_DIR), opts=options)
        return auto.select_stack(name, work_dir=str(PROJECT_DIR), opts=options)
    except auto.StackNotFoundError:
        raise MigrationError(
            f"stack {name!r} does not exist in {backend_url()}",
            f"create it with `python -m automation up --stack {name}` or pass an existing --stack",
        ) from None
    except auto.CommandError as exc:
        raise MigrationError(f"pulumi could not open stack {name!r}: {str(exc).strip().splitlines()[-1]}",
                             "run `pulumi login` against the backend or check PULUMI_BACKEND_URL") from None


def log_engine_event(event: Any) -> None:
    """Engine events as structured log lines (resource steps, diagnostics, the summary)."""
    if event.resource_pre_event is not None:
        meta = event.resource_pre_event.metadata
        log.info("resource", op=str(meta.op.value if hasattr(meta.op, "value") else meta.op), type=meta.type,
                 name=meta.urn.rsplit("::", 1)[-1])
    elif event.diagnostic_event is not None and event.diagnostic_event.severity in ("warning", "error"):
        log.warning("pulumi", severity=event.diagnostic_event.severity,
                    message=event.diagnostic_event.message.strip())
    elif event.summary_event is not None:
        log.info("summary", changes=dict(event.summary_event.resource_changes),
                 seconds=event.summary_event.duration_seconds)


def plain_outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """Automation's OutputMap as plain values; secret ones are registered for redaction."""
    plain: dict[str, Any] = {}
    for key, out in outputs.items():
        value = getattr(out, "value", out)
        if getattr(out, "secret", False) or key in SECRET_OUTPUTS:
            register_secret(value if isinstance(value, str) else json.dumps(value))
        plain[key] = value
    return plain


@dataclass(frozen=True)
class StackConnection:
    """How to reach the stack's database as the master user; the password may still need fetching."""

    host: str
    port: int
    database: str
    user: str
    password: str | None
    secret_arn: str | None
    sslmode: str
    sslrootcert: str | None

    def url(self, password: str) -> DatabaseUrl:
        query = [("sslmode", self.sslmode)]
        if self.sslrootcert:
            query.append(("sslrootcert", self.sslrootcert))
        register_secret(password)
        return DatabaseUrl("target", self.user, password, self.host, self.port, self.database, tuple(query))


def connection_from_outputs(outputs: Mapping[str, Any], *, ca_bundle: str | None = None) -> StackConnection:
    """TLS is always required; with an RDS CA bundle the host name is verified too."""
    missing = [k for k in ("address", "port", "dbName", "masterUsername") if not outputs.get(k)]
    if missing:
        raise MigrationError(f"the stack has no {', '.join(missing)} output(s) yet",
                             "run `python -m automation up` to completion first")
    if not (outputs.get("masterPassword") or outputs.get("masterSecretArn")):
        raise MigrationError("the stack exposes neither masterPassword nor masterSecretArn",
                             "set passwordMode to managed or random and run up again")
    if ca_bundle and not Path(ca_bundle).is_file():
        raise MigrationError(f"CA bundle {ca_bundle} does not exist",
                             "download the RDS global bundle (global-bundle.pem) and pass its path")
    return StackConnection(
        host=str(outputs["address"]), port=int(outputs["port"]), database=str(outputs["dbName"]),
        user=str(outputs["masterUsername"]), password=outputs.get("masterPassword"),
        secret_arn=outputs.get("masterSecretArn"),
        sslmode="verify-full" if ca_bundle else "require", sslrootcert=ca_bundle,
    )


def fetch_secret_password(secret_arn: str) -> str:
    """RDS-managed master secrets are JSON {"username", "password"} in Secrets Manager."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    region = secret_arn.split(":")[3] if secret_arn.count(":") >= 6 else None
    try:
        value = boto3.client("secretsmanager", region_name=region).get_secret_value(SecretId=secret_arn)
    except (BotoCoreError, ClientError) as exc:
        raise MigrationError(f"could not read the master password secret: {exc}",
                             "allow secretsmanager:GetSecretValue on it for your AWS identity") from None
    password = json.loads(value["SecretString"])["password"]
    register_secret(password)
    return password


def master_url(conn: StackConnection, fetch: Callable[[str], str] = fetch_secret_password) -> DatabaseUrl:
    password = conn.password or fetch(str(conn.secret_arn))
    return conn.url(password)


def confirm(question: str, *, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise MigrationError("refusing to change infrastructure without confirmation", "pass --yes")
    if input(f"{question} [y/N] ").strip().lower() not in ("y", "yes"):
        raise MigrationError("cancelled", "rerun and answer y, or pass --yes")
