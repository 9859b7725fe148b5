"""`status`, `down --local`, `reset --local`: the lifecycle of the servers `up --local` runs.

`up --local --keep-running` leaves two PostgreSQL servers up under the state folder; these
commands say whether they run, stop them, or remove the whole local state to start over.
"""

from __future__ import annotations

import argparse
import shutil
import sys

from automation.local import local_env_file, servers, state_dir
from automation.stack import confirm
from loaders.errors import MigrationError


def _require_local(args: argparse.Namespace, command: str) -> None:
    if not args.local:
        raise MigrationError(f"`{command}` only manages the local servers today",
                             f"run `python -m automation {command} --local` (for the AWS stack: `destroy`)")


def cmd_status(args: argparse.Namespace) -> int:
    home = state_dir()
    print(f"local state: {home}" + ("" if home.exists() else " (none: run `python -m automation up --local`)"))
    for role, server in servers(home).items():
        if not server.initialized:
            print(f"{role} ({server.data_dir.name}): not created")
            continue
        state = "running" if server.running else "stopped"
        print(f"{role} ({server.data_dir.name}): {state} on 127.0.0.1:{server.port}, data {server.data_dir}")
    env = local_env_file(home)
    if env.exists():
        print(f"admin URLs: {env}  (set -a; . {env}; set +a)")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    _require_local(args, "down")
    for role, server in servers().items():
        if server.running:
            server.stop()
            print(f"{role} ({server.data_dir.name}): stopped", file=sys.stderr)
        elif server.initialized:
            print(f"{role} ({server.data_dir.name}): was not running", file=sys.stderr)
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    _require_local(args, "reset")
    home = state_dir()
    if not home.exists():
        print(f"nothing to reset: {home} does not exist", file=sys.stderr)
        return 0
    confirm(f"Stop the local servers and delete {home} (both databases, reports, backend.env, recorded passwords)?",
            yes=args.yes, action="delete the local state")
    for server in servers(home).values():
        server.stop()
    shutil.rmtree(home)
    print(f"removed {home}; `python -m automation up --local` starts from scratch", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    status = sub.add_parser("status", help="whether the local servers of `up --local` are running, and where")
    status.set_defaults(handler=cmd_status)
    down = sub.add_parser("down", help="stop the local servers `up --local --keep-running` left running")
    down.add_argument("--local", action="store_true", help="the local servers (required)")
    down.set_defaults(handler=cmd_down)
    reset = sub.add_parser("reset", help="stop the local servers and delete the local state (asks, or --yes)")
    reset.add_argument("--local", action="store_true", help="the local state (required)")
    reset.add_argument("--yes", action="store_true", help="delete without asking")
    reset.set_defaults(handler=cmd_reset)
