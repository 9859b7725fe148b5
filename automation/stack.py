"""The Pulumi side of the driver: prerequisites, the stack, its outputs → a connection.

The driver runs *this project's directory* through the Automation API's LocalWorkspace,
so `pulumi preview` and `python -m automation up` always evaluate the same program.
Everything a fresh machine lacks (CLI, passphrase, AWS credentials) is checked first and
reported as one line with the fix, before Pulumi gets a chance to print a stack trace.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog

from infra.config import ACCESS_WINDOW_KEY, APPLY_IMMEDIATELY_KEY, DatabaseSettings, config_key
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


def confirm(question: str, *, yes: bool, flag: str = "--yes", action: str = "change infrastructure") -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise MigrationError(f"refusing to {action} without confirmation", f"pass {flag}")
    if input(f"{question} [y/N] ").strip().lower() not in ("y", "yes"):
        raise MigrationError("cancelled", f"rerun and answer y, or pass {flag}")


# -- reaching the new database: --access none | window | vpc ------------------------------------

ACCESS_CHOICES = ("none", "window", "vpc")
# Nothing is opened unless asked for: a private database stays private, and a run inside the
# VPC (CI, EC2, ECS) never asks a web service for its address. The preflight names the choices.
DEFAULT_ACCESS = "none"
CHECKIP_URL = "https://checkip.amazonaws.com"
WINDOW_WAIT_SECONDS = 120.0  # the endpoint's DNS name turns public a little after the `up`
PROBE_TIMEOUT = 5.0
T = TypeVar("T")


def fetch_public_ip(url: str = CHECKIP_URL, timeout: float = PROBE_TIMEOUT) -> str:
    """This machine's address as AWS sees it (one line of text from AWS's check-IP service)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - fixed https URL
        return response.read(100).decode("ascii", "replace").strip()


def window_cidr(explicit: str | None, detect: Callable[[], str] = fetch_public_ip) -> str:
    """The operator's one address as /32 or /128: --access-cidr, or detected."""
    if explicit is None:
        try:
            explicit = detect()
        except (OSError, ValueError) as exc:
            raise MigrationError(f"could not detect this machine's public address from {CHECKIP_URL} ({exc})",
                                 "pass it with --access-cidr ADDRESS") from None
    try:
        net = ipaddress.ip_network(explicit.strip(), strict=True)
    except ValueError:
        raise MigrationError(f"{explicit!r} is not an IP address", "pass --access-cidr like 203.0.113.7 or 2001:db8::7/128") from None
    if net.prefixlen != net.max_prefixlen:
        raise MigrationError(f"--access-cidr {net} is a range; the access window admits exactly one address",
                             f"pass one address, e.g. {net.network_address}/{net.max_prefixlen}")
    return str(net)


@dataclass(frozen=True)
class StackOps:
    """The few stack operations the open/migrate/close sequence needs, as plain callables so the
    sequence can be exercised without a Pulumi engine."""

    up: Callable[[], None]
    set_config: Callable[[str, str], None]
    remove_config: Callable[[str], None]  # a key that is not set is no error
    has_config: Callable[[str], bool]


def stack_ops(stack: Any) -> StackOps:
    from pulumi import automation as auto

    def has(key: str) -> bool:
        return config_key(key) in stack.get_all_config()

    def remove(key: str) -> None:
        if has(key):
            stack.remove_config(config_key(key))

    return StackOps(
        up=lambda: stack.up(on_event=log_engine_event),
        set_config=lambda key, value: stack.set_config(config_key(key), auto.ConfigValue(value=value)),
        remove_config=remove,
        has_config=has,
    )


@contextmanager
def interrupts_ignored() -> Iterator[None]:
    """A second Ctrl-C must not abandon the window's closing half-way: this process ignores it (in
    the main thread). The pulumi CLI, a Go program, re-arms its own Ctrl-C handling and may still
    cancel its update; the close then fails with the command that finishes it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def close_window(ops: StackOps, stack_name: str) -> None:
    log.info("access window closing", stack=stack_name)
    with interrupts_ignored():
        try:
            ops.remove_config(ACCESS_WINDOW_KEY)
            ops.up()
        except Exception as exc:  # whatever failed, the one thing to say is that the window is open
            detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise MigrationError(
                f"the access window of stack {stack_name!r} could NOT be closed ({detail})",
                f"run `python -m automation up --stack {stack_name} --yes` now: it removes the window; "
                "`drift --stack` reports it while it stays open",
            ) from exc
    log.info("access window closed", stack=stack_name)


def through_window(ops: StackOps, cidr: str, work: Callable[[], T], *, stack_name: str) -> T:
    """Open (config + `up`), run `work`, close (config removed + `up`) in a `finally`: the window
    closes after success, failure and Ctrl-C alike, and also when opening failed half-way."""
    try:
        ops.set_config(ACCESS_WINDOW_KEY, cidr)
        ops.up()
        return work()
    finally:
        close_window(ops, stack_name)


def with_config_for_one_up(ops: StackOps, key: str, value: str) -> None:
    """One `up` with a setting the stack does not keep (e.g. applyImmediately for a major upgrade)."""
    try:
        ops.set_config(key, value)
        ops.up()
    finally:
        with interrupts_ignored():
            ops.remove_config(key)


def close_stale_window(ops: StackOps, stack_name: str) -> bool:
    """A killed run can leave the window config behind; the next `up` must not re-apply it."""
    if not ops.has_config(ACCESS_WINDOW_KEY):
        return False
    log.warning("access window left open by an earlier run; this up closes it", stack=stack_name)
    ops.remove_config(ACCESS_WINDOW_KEY)
    return True


# -- preflight: is the target reachable from here? ------------------------------------------------

def tcp_probe(host: str, port: int, timeout: float) -> str | None:
    """None when a TCP connection opens; else why not (no login is attempted)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror as exc:
        return f"host name does not resolve: {exc.strerror or exc}"
    except TimeoutError:
        return f"no answer within {timeout:.0f}s"
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def unreachable_error(host: str, port: int, reason: str, access: str, *, cidr: str | None = None) -> MigrationError:
    where = f"target {host}:{port} is not reachable from this machine ({reason})"
    choices = ("--access window (open it to this machine's address for this run only), --access vpc (run "
               "inside the VPC: EC2, ECS or CloudShell's VPC environment; README 'First run'), or --access none "
               "after adding your network to allowedCidrs")
    if access == "vpc":
        return MigrationError(
            f"{where}, but --access vpc means this machine runs inside the stack's VPC",
            "run from an instance or task in that VPC whose security group is clientSecurityGroupId (or listed in "
            "allowedSecurityGroupIds) or whose range is in allowedCidrs; from outside AWS use " + choices)
    if access == "window":
        return MigrationError(
            f"{where} although the access window admits {cidr}",
            f"check that {cidr} is this machine's public address (else pass --access-cidr), that outbound 5432 "
            "is not blocked here, and that the subnets route to the internet; or use --access vpc")
    return MigrationError(where, "choose how to reach it: " + choices)


def preflight(host: str, port: int, access: str, *, cidr: str | None = None, wait_seconds: float = 0.0,
              probe: Callable[[str, int, float], str | None] = tcp_probe,
              clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
    """Before any migration step: stop with one line naming the choices when the target is unreachable.
    With a window just opened, retry for `wait_seconds` while the endpoint's DNS turns public."""
    deadline = clock() + wait_seconds
    while True:
        reason = probe(host, port, PROBE_TIMEOUT)
        if reason is None:
            log.info("target reachable", host=host, port=port, access=access)
            return
        if clock() >= deadline:
            raise unreachable_error(host, port, reason, access, cidr=cidr)
        sleep(min(5.0, max(0.0, deadline - clock())))


# -- major engine upgrades --------------------------------------------------------------------------

def major_upgrade(current: Any, wanted: Any) -> tuple[int, int] | None:
    """(from, to) when the configured major is above the deployed one."""
    try:
        before, after = int(str(current).split(".")[0]), int(str(wanted).split(".")[0])
    except (TypeError, ValueError):
        return None
    return (before, after) if after > before else None


def planned_major_upgrade(stack: Any) -> tuple[int, int] | None:
    """The deployed `engineVersion` output against the configured one (default when unset)."""
    deployed = getattr(stack.outputs().get("engineVersion"), "value", None)
    configured = stack.get_all_config().get(config_key("engineVersion"))
    wanted = configured.value if configured is not None else DatabaseSettings().engine_version
    return major_upgrade(deployed, wanted) if deployed else None


def describe_major_upgrade(upgrade: tuple[int, int]) -> str:
    before, after = upgrade
    return (f"engineVersion rises {before} → {after}: a MAJOR upgrade of the RDS instance, applied now (with its "
            f"postgres{after} parameter group). It cannot be undone, the database is unavailable while RDS upgrades "
            "it, and extensions may need ALTER EXTENSION … UPDATE afterwards. Take a snapshot first. Upgrade?")


def upgrade_major(ops: StackOps) -> None:
    """The upgrading `up` runs with applyImmediately, so engine version and parameter group change together
    (a stack that keeps applyImmediately in its own config keeps it)."""
    if ops.has_config(APPLY_IMMEDIATELY_KEY):
        ops.up()
    else:
        with_config_for_one_up(ops, APPLY_IMMEDIATELY_KEY, "true")
