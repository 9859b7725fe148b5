"""The driver's Pulumi layer at its boundaries: prerequisites on this machine, and the
outputs the real program produces (under mocks) turned into connection settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from automation import stack as pulumi_stack
from automation.cli import main
from infra.program import run
from loaders.errors import MigrationError
from loaders.redaction import scrub
from tests.pulumi_harness import run_program

ROOT = Path(__file__).resolve().parent.parent


def _cli(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "automation", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_up_without_the_pulumi_cli_says_how_to_fix_it(tmp_path: Path) -> None:
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path), "PULUMI_CONFIG_PASSPHRASE": "x"}
    result = _cli("up", "--stack", "dev", "--yes", env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "pulumi CLI is not installed" in lines[0] and "up --local" in lines[0]


def test_missing_passphrase_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    with pytest.raises(MigrationError, match="PULUMI_CONFIG_PASSPHRASE is not set"):
        pulumi_stack.require_passphrase()


def test_missing_aws_credentials_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(MigrationError) as info:
        pulumi_stack.require_aws_credentials()
    assert "no AWS credentials" in info.value.one_line() and "AWS_PROFILE" in info.value.one_line()


def test_default_backend_is_a_local_file_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    assert pulumi_stack.backend_url() == f"file://{ROOT}"
    monkeypatch.setenv("PULUMI_BACKEND_URL", "s3://bucket/state")
    assert pulumi_stack.backend_url() == "s3://bucket/state"


def test_managed_stack_outputs_become_a_tls_connection_with_fetched_password() -> None:
    outputs = run_program(run, {"allowedCidrs": ["10.0.0.0/8"]}).outputs
    conn = pulumi_stack.connection_from_outputs(outputs)
    assert conn.host.endswith(".rds.amazonaws.com") and conn.port == 5432
    assert (conn.database, conn.user, conn.password) == ("app", "app_admin", None)
    assert conn.sslmode == "require"
    fetched: list[str] = []
    url = pulumi_stack.master_url(conn, fetch=lambda arn: fetched.append(arn) or "from-secrets-manager")
    assert fetched == [outputs["masterSecretArn"]]
    assert url.password == "from-secrets-manager" and ("sslmode", "require") in url.query
    assert "from-secrets-manager" not in scrub(url.dsn())


def test_random_password_stack_needs_no_secrets_manager(tmp_path: Path) -> None:
    outputs = run_program(run, {"allowedCidrs": ["10.0.0.0/8"], "passwordMode": "random"}).outputs
    bundle = tmp_path / "global-bundle.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    conn = pulumi_stack.connection_from_outputs(outputs, ca_bundle=str(bundle))
    url = pulumi_stack.master_url(conn, fetch=lambda arn: pytest.fail("must not fetch"))
    assert url.password == outputs["masterPassword"]
    assert dict(url.query) == {"sslmode": "verify-full", "sslrootcert": str(bundle)}


def test_incomplete_outputs_are_refused() -> None:
    with pytest.raises(MigrationError, match="no address"):
        pulumi_stack.connection_from_outputs({"port": 5432, "dbName": "app", "masterUsername": "u"})


def test_secret_outputs_are_registered_for_redaction() -> None:
    class Out:
        def __init__(self, value: str, secret: bool) -> None:
            self.value, self.secret = value, secret

    plain = pulumi_stack.plain_outputs({"masterPassword": Out("pw-from-stack-123", True), "port": Out("5432", False)})
    assert plain == {"masterPassword": "pw-from-stack-123", "port": "5432"}
    assert "pw-from-stack-123" not in scrub("login failed for pw-from-stack-123")


@pytest.mark.parametrize("command", ["up", "preview", "destroy", "outputs"])
def test_every_stack_command_documents_its_environment(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "--stack" in text and "PULUMI_CONFIG_PASSPHRASE" in text
