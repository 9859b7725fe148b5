"""The application role's password across runs: kept, unless rotation is asked for.

`up` used to mint a new password on every run, so a rerun that then stopped (a mismatch, a
live target) left the database with a password `backend.env` did not have. The rule now:
`APP_ROLE_PASSWORD` if set, else the password recorded for the role, else a new one —
and a new one otherwise only with `--rotate-app-password`. It is recorded where RDS keeps
its own master password when the stack is provisioned (AWS Secrets Manager), and in a 0600
file in the local state folder for `up --local`. Whenever the role gets a password, the
backend's env file is written in the same step, so the two never disagree.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog

from automation.commands.options import APP_ROLE_PASSWORD_ENV
from loaders.connect import connection
from loaders.dsn import DatabaseUrl
from loaders.errors import MigrationError
from loaders.redaction import MASK, register_secret
from loaders.schema.app_role import set_role_password
from loaders.secretfile import read_secret, write_secret

log = structlog.get_logger(stage="app-password")
SECRET_PREFIX = "supabase-to-rds"


class PasswordStore(Protocol):
    """Where the role's password is recorded between runs."""

    where: str

    def get(self) -> str | None: ...

    def put(self, password: str) -> None: ...


@dataclass
class LocalPasswordStore:
    """`<state>/<role>.password`, mode 0600 (the state folder is 0700 when we create it)."""

    path: Path

    @property
    def where(self) -> str:
        return str(self.path)

    def get(self) -> str | None:
        return read_secret(self.path) or None

    def put(self, password: str) -> None:
        write_secret(self.path, password + "\n")


@dataclass
class SecretsManagerStore:
    """An AWS Secrets Manager secret `supabase-to-rds/<stack>/<role>` holding
    `{"username": …, "password": …}`, the shape RDS uses for its master secret."""

    name: str
    username: str
    client: Any = None  # a boto3 secretsmanager client; created on first use

    @property
    def where(self) -> str:
        return f"secretsmanager:{self.name}"

    def _client(self) -> Any:
        if self.client is None:
            import boto3

            self.client = boto3.client("secretsmanager")
        return self.client

    def get(self) -> str | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            value = self._client().get_secret_value(SecretId=self.name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return None
            raise MigrationError(f"could not read the app role's secret {self.name}: {exc}",
                                 "allow secretsmanager:GetSecretValue on it for your AWS identity") from None
        except BotoCoreError as exc:
            raise MigrationError(f"could not read the app role's secret {self.name}: {exc}",
                                 "check AWS credentials and region") from None
        password = json.loads(value["SecretString"]).get("password")
        return str(password) if password else None

    def put(self, password: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        body = json.dumps({"username": self.username, "password": password})
        client = self._client()
        try:
            try:
                client.put_secret_value(SecretId=self.name, SecretString=body)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                    raise
                client.create_secret(Name=self.name, SecretString=body,
                                     Description="supabase-to-rds: the application role's password")
        except (BotoCoreError, ClientError) as exc:
            raise MigrationError(f"could not record the app role's password in {self.name}: {exc}",
                                 "allow secretsmanager:CreateSecret and PutSecretValue for your AWS identity") from None


def secrets_manager_store(stack: str, role: str) -> SecretsManagerStore:
    return SecretsManagerStore(f"{SECRET_PREFIX}/{stack}/{role}", role)


@dataclass(frozen=True)
class AppPassword:
    password: str
    origin: str  # "environment" | "recorded" | "new" | "rotated"

    @property
    def changes(self) -> bool:
        return self.origin in ("new", "rotated")


def resolve_app_password(store: PasswordStore, *, rotate: bool = False,
                         environ: dict[str, str] | None = None) -> AppPassword:
    """APP_ROLE_PASSWORD, else the recorded one, else a new one; `rotate` forces a new one.
    A password that is new or from the environment is recorded before any database sees it,
    so a run that dies half-way still knows what the role may have."""
    env = (os.environ if environ is None else environ).get(APP_ROLE_PASSWORD_ENV)
    if env and rotate:
        raise MigrationError(f"--rotate-app-password and {APP_ROLE_PASSWORD_ENV} both given",
                             f"unset {APP_ROLE_PASSWORD_ENV} to let the tool choose, or drop --rotate-app-password")
    recorded = store.get()
    if env:
        chosen = AppPassword(env, "environment")
    elif recorded and not rotate:
        chosen = AppPassword(recorded, "recorded")
    else:
        chosen = AppPassword(secrets.token_urlsafe(24), "rotated" if recorded else "new")
    register_secret(chosen.password)
    if chosen.password != recorded:
        store.put(chosen.password)
    log.info("app_role_password", origin=chosen.origin, recorded_in=store.where)
    return chosen


def backend_env_line(app_url: DatabaseUrl, *, show_secrets: bool) -> str:
    shown = app_url.dsn() if show_secrets else app_url.dsn(with_password=False).replace("@", f":{MASK}@", 1)
    return f"DATABASE_URL={shown}"


async def apply_app_password(target: DatabaseUrl, role: str, chosen: AppPassword, env_file: Path) -> DatabaseUrl:
    """Give an existing role its password now and write the backend's env file in the same step
    (a role that does not exist yet is created by the schema step with the same password)."""
    async with connection(target) as conn:
        if await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", role):
            await set_role_password(conn, role, chosen.password)
    app_url = target.with_credentials(role, chosen.password)
    write_secret(env_file, backend_env_line(app_url, show_secrets=True) + "\n")
    return app_url
