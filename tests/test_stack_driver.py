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


# -- the access window: open → migrate → close, with plain callables standing in for the stack ---

import http.server  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402

from infra.config import AccessWindow, ConfigError, access_window, load_settings  # noqa: E402
from loaders.errors import VerificationMismatch  # noqa: E402

CIDR = "198.51.99.7/32"


class RecordedStack:
    """Records the order of stack operations; `config` is what the program would read."""

    def __init__(self, fail_up: Callable[[int], BaseException | None] = lambda n: None) -> None:
        self.calls: list[str] = []
        self.config: dict[str, str] = {}
        self.ups = 0
        self.fail_up = fail_up

    def ops(self) -> pulumi_stack.StackOps:
        def up() -> None:
            self.ups += 1
            self.calls.append(f"up window={self.config.get('accessWindowCidr')}")
            error = self.fail_up(self.ups)
            if error is not None:
                raise error

        def set_config(key: str, value: str) -> None:
            self.calls.append(f"set {key}")
            self.config[key] = value

        def remove_config(key: str) -> None:
            self.calls.append(f"remove {key}")
            self.config.pop(key, None)

        return pulumi_stack.StackOps(up=up, set_config=set_config, remove_config=remove_config,
                                     has_config=lambda key: key in self.config)


OPEN_AND_CLOSE = ["set accessWindowCidr", f"up window={CIDR}", "migrate", "remove accessWindowCidr", "up window=None"]


def run_window(stack: RecordedStack, work: Callable[[], int]) -> int:
    def migrate() -> int:
        stack.calls.append("migrate")
        return work()

    return pulumi_stack.through_window(stack.ops(), CIDR, migrate, stack_name="dev")


def test_window_opens_migrates_and_closes() -> None:
    stack = RecordedStack()
    assert run_window(stack, lambda: 0) == 0
    assert stack.calls == OPEN_AND_CLOSE and stack.config == {}


@pytest.mark.parametrize("error", [MigrationError("copy failed", "fix it"), VerificationMismatch("2 tables differ"),
                                   RuntimeError("bug"), KeyboardInterrupt()])
def test_window_closes_after_a_failing_or_interrupted_migration(error: BaseException) -> None:
    stack = RecordedStack()

    def fail() -> int:
        raise error

    with pytest.raises(type(error)):
        run_window(stack, fail)
    assert stack.calls == OPEN_AND_CLOSE and stack.config == {}


def test_window_closes_when_the_opening_up_is_interrupted() -> None:
    stack = RecordedStack(fail_up=lambda n: KeyboardInterrupt() if n == 1 else None)
    with pytest.raises(KeyboardInterrupt):
        run_window(stack, lambda: 0)
    assert stack.calls == ["set accessWindowCidr", f"up window={CIDR}", "remove accessWindowCidr", "up window=None"]


def test_a_window_that_cannot_close_says_so_and_how_to_close_it() -> None:
    stack = RecordedStack(fail_up=lambda n: RuntimeError("error: update failed\nconflict: another update") if n == 2 else None)
    with pytest.raises(MigrationError) as info:
        run_window(stack, lambda: 0)
    line = info.value.one_line()
    assert "could NOT be closed (conflict: another update)" in line and "up --stack dev" in line
    assert isinstance(info.value.__cause__, RuntimeError)


def test_ctrl_c_while_closing_does_not_abandon_the_close() -> None:
    stack = RecordedStack(fail_up=lambda n: os.kill(os.getpid(), signal.SIGINT) if n == 2 else None)
    assert run_window(stack, lambda: 0) == 0  # the real SIGINT arrived during the closing `up`
    assert stack.calls == OPEN_AND_CLOSE
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C works again afterwards
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        threading.Event().wait(1)


def test_one_up_settings_are_removed_even_when_the_up_fails() -> None:
    stack = RecordedStack(fail_up=lambda n: RuntimeError("boom"))
    with pytest.raises(RuntimeError):
        pulumi_stack.upgrade_major(stack.ops())
    assert stack.calls == ["set applyImmediately", "up window=None", "remove applyImmediately"]
    assert stack.config == {}


def test_a_stack_own_apply_immediately_is_kept() -> None:
    stack = RecordedStack()
    stack.config["applyImmediately"] = "true"
    pulumi_stack.upgrade_major(stack.ops())
    assert stack.calls == ["up window=None"] and stack.config == {"applyImmediately": "true"}


def test_a_window_left_by_a_killed_run_is_removed_before_the_next_up() -> None:
    stack = RecordedStack()
    assert pulumi_stack.close_stale_window(stack.ops(), "dev") is False and stack.calls == []
    stack.config["accessWindowCidr"] = CIDR
    assert pulumi_stack.close_stale_window(stack.ops(), "dev") is True
    assert stack.calls == ["remove accessWindowCidr"] and stack.config == {}


# -- the operator's address ----------------------------------------------------------------------

@pytest.mark.parametrize("given, cidr", [("203.0.113.7", "203.0.113.7/32"), ("203.0.113.7/32", "203.0.113.7/32"),
                                         ("2001:db8::7", "2001:db8::7/128"), (" 198.51.99.7\n", "198.51.99.7/32")])
def test_window_cidr_is_one_address(given: str, cidr: str) -> None:
    assert pulumi_stack.window_cidr(given, detect=lambda: pytest.fail("must not detect")) == cidr


def test_window_cidr_refuses_ranges_and_names() -> None:
    with pytest.raises(MigrationError) as info:
        pulumi_stack.window_cidr("203.0.113.0/24")
    assert "is a range" in info.value.one_line() and "203.0.113.0/32" in info.value.one_line()
    with pytest.raises(MigrationError, match="not an IP address"):
        pulumi_stack.window_cidr("my-laptop")


def test_detected_address_and_detection_failure() -> None:
    assert pulumi_stack.window_cidr(None, detect=lambda: "198.51.99.7\n") == CIDR

    def offline() -> str:
        raise OSError("Network is unreachable")

    with pytest.raises(MigrationError) as info:
        pulumi_stack.window_cidr(None, detect=offline)
    assert "checkip.amazonaws.com" in info.value.one_line() and "--access-cidr" in info.value.one_line()
    with pytest.raises(MigrationError, match="not an IP address"):
        pulumi_stack.window_cidr(None, detect=lambda: "<html>captive portal</html>")


@contextmanager
def http_server(body: bytes) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_public_ip_reads_the_check_ip_answer() -> None:
    with http_server(b"198.51.99.7\n") as url:
        assert pulumi_stack.fetch_public_ip(url) == "198.51.99.7"


def test_window_description_names_address_port_and_public_access() -> None:
    opened = access_window(load_settings({"accessWindowCidr": CIDR}))
    assert opened == AccessWindow(CIDR, public=True)
    text = opened.describe()
    assert "5432" in text and CIDR in text and "public accessibility" in text
    private = access_window(load_settings({"accessWindowCidr": CIDR, "network": {"mode": "new"}}))
    assert private is not None and not private.public and "stays private" in private.describe()
    with pytest.raises(ConfigError):
        load_settings({"accessWindowCidr": "198.51.99.0/24"})


# -- preflight, against real sockets ------------------------------------------------------------

@contextmanager
def listening() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as server:
        return server.getsockname()[1]


def test_preflight_passes_when_the_port_answers() -> None:
    with listening() as port:
        pulumi_stack.preflight("127.0.0.1", port, "none")


def test_unreachable_target_names_the_three_choices_in_one_line() -> None:
    with pytest.raises(MigrationError) as info:
        pulumi_stack.preflight("127.0.0.1", closed_port(), "none")
    line = info.value.one_line()
    assert "\n" not in line and "not reachable" in line
    assert all(choice in line for choice in ("--access window", "--access vpc", "--access none"))


def test_vpc_preflight_says_this_machine_is_not_in_the_vpc() -> None:
    with pytest.raises(MigrationError) as info:
        pulumi_stack.preflight("127.0.0.1", closed_port(), "vpc")
    line = info.value.one_line()
    assert "--access vpc means this machine runs inside" in line and "clientSecurityGroupId" in line


def test_unresolvable_host_is_unreachable_too() -> None:
    with pytest.raises(MigrationError, match="does not resolve"):
        pulumi_stack.preflight("db.invalid", 5432, "none")


def test_window_preflight_waits_for_the_endpoint_to_answer() -> None:
    port = closed_port()
    servers: list[socket.socket] = []
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:  # the endpoint starts answering after the first try
        sleeps.append(seconds)
        if not servers:
            servers.append(socket.create_server(("127.0.0.1", port)))

    try:
        pulumi_stack.preflight("127.0.0.1", port, "window", cidr=CIDR, wait_seconds=60, sleep=sleep)
    finally:
        for server in servers:
            server.close()
    assert sleeps == [5.0]


def test_window_preflight_gives_up_at_its_deadline_naming_the_address() -> None:
    now = [0.0]
    with pytest.raises(MigrationError) as info:
        pulumi_stack.preflight("127.0.0.1", closed_port(), "window", cidr=CIDR, wait_seconds=12,
                               clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert now[0] == 12 and CIDR in info.value.one_line() and "--access-cidr" in info.value.one_line()


# -- major upgrades ------------------------------------------------------------------------------

@pytest.mark.parametrize("deployed, wanted, upgrade", [("16", "17", (16, 17)), ("16", "16", None), ("17", "16", None),
                                                       ("16.4", "17", (16, 17)), (None, "17", None)])
def test_major_upgrade_is_a_rise_of_the_major(deployed: str | None, wanted: str, upgrade: tuple | None) -> None:
    assert pulumi_stack.major_upgrade(deployed, wanted) == upgrade


def test_major_upgrade_is_read_from_the_deployed_output_and_the_config() -> None:
    class Value:
        def __init__(self, value: str) -> None:
            self.value, self.secret = value, False

    class Stack:
        def __init__(self, deployed: str | None, config: dict[str, str]) -> None:
            self._outputs = {"engineVersion": Value(deployed)} if deployed else {}
            self._config = {k: Value(v) for k, v in config.items()}

        def outputs(self) -> dict:
            return self._outputs

        def get_all_config(self) -> dict:
            return self._config

    assert pulumi_stack.planned_major_upgrade(Stack("16", {"supabase-to-rds:engineVersion": "17"})) == (16, 17)
    assert pulumi_stack.planned_major_upgrade(Stack("15", {})) == (15, 16)  # the default major
    assert pulumi_stack.planned_major_upgrade(Stack(None, {"supabase-to-rds:engineVersion": "17"})) is None
    assert "cannot be undone" in pulumi_stack.describe_major_upgrade((16, 17))


def test_major_upgrade_needs_its_own_confirmation_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    with pytest.raises(MigrationError) as info:
        pulumi_stack.confirm(pulumi_stack.describe_major_upgrade((16, 17)), yes=False, flag="--allow-major-upgrade")
    assert "pass --allow-major-upgrade" in info.value.one_line()


def test_up_offers_the_access_choices(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["up", "--help"])
    text = capsys.readouterr().out
    assert "--access {none,window,vpc}" in text and "--access-cidr" in text and "default: none" in text
    with pytest.raises(SystemExit) as exited:
        main(["up", "--access", "open"])
    assert exited.value.code == 64
