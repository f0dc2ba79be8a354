"""``archlab app [--storage URL | RUNS_DIR] [--host 127.0.0.1] [--port 8501] [--token]``: the
Streamlit dashboard.

The app reads the storage (read-only) and imports no torch. ``RUNS_DIR`` may be a runs directory
(every ``*/study.db`` is offered), one run directory or a study file; without either the app
looks in ``./runs``. Visitors choose only among these storages. The port is checked before the
server starts (a busy one is one error line). On a host that is not a loopback address (e.g.
``--host 0.0.0.0``) the command warns and the page requires an access token, printed in the
URL (``?token=...``); ``--token`` asks for one on loopback too.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
from pathlib import Path
from typing import Any

from archlab.core.errors import ArchlabError
from archlab.core.layout import STUDY_DB, RunLayout

ENV_TARGET = "ARCHLAB_APP_TARGET"  # same name as archlab.app.sources.ENV_TARGET


def streamlit_command(target: str, host: str, port: int) -> list[str]:
    """The ``streamlit run`` command line of the dashboard (headless, no usage statistics), run by
    ``archlab.app.serve`` (Streamlit's command line plus a warm-up as the server starts)."""
    import archlab.app

    main = Path(archlab.app.__file__).resolve().parent / "main.py"
    return [
        sys.executable, "-m", "archlab.app.serve", "run", str(main),
        "--server.headless", "true",
        "--server.address", host,
        "--server.port", str(port),
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        "--browser.gatherUsageStats", "false",
        "--global.developmentMode", "false",
        "--client.toolbarMode", "minimal",
        "--theme.base", "light",
        "--theme.primaryColor", "#d62728",
    ]  # fmt: skip


def resolve_target(storage: str | None, runs_dir: str | None) -> str:
    """The storage URL, or an absolute path to a runs/run directory or study file."""
    if storage and runs_dir:
        raise ArchlabError("give either --storage URL or RUNS_DIR, not both")
    text = storage or runs_dir or "runs"
    if "://" in text:
        return text
    path = Path(text).expanduser()
    if not path.exists():
        raise ArchlabError(f"{text}: no such runs directory, run directory or study file "
                           "(pass --storage URL for a database server)")
    if path.is_dir() and not RunLayout(path).study_db.is_file() and not any(path.glob(f"*/{STUDY_DB}")):
        raise ArchlabError(f"{text}: no study.db in it or in any of its subdirectories (runs/<name>/study.db)")
    return str(path.resolve())


def check_port(host: str, port: int) -> None:
    """Raise ``ArchlabError`` unless the server could listen on ``host:port`` now: bound the way
    Streamlit binds it (IPv6 when the host has a colon, ``SO_REUSEADDR``), then released."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((host.strip("[]"), port))
            sock.listen(1)
        except socket.gaierror as exc:
            raise ArchlabError(f"--host {host}: not an address this machine can listen on ({exc.strerror})") from None
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ArchlabError(f"port {port} on {host} is in use (another archlab app or server?); "
                                   "pick a free one with --port") from None
            if exc.errno == errno.EACCES:
                raise ArchlabError(f"port {port} on {host}: permission denied (ports below 1024 need "
                                   "privileges); pick another with --port") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise ArchlabError(f"--host {host}: not an address of this machine") from None
            raise ArchlabError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from None


def access_token(host: str, force: bool) -> str | None:
    """The token the page will require: on a non-loopback ``host`` or when ``force``d, that of
    ``$ARCHLAB_APP_TOKEN`` if set (a stable token across restarts), else a new one; else None."""
    from archlab.app import access

    if not force and access.is_loopback(host):
        return None
    return os.environ.get(access.ENV_TOKEN) or access.new_token()


def cmd_app(args: argparse.Namespace) -> int:
    from archlab.app import access

    target = resolve_target(args.storage, args.runs_dir)
    if not 0 < args.port < 65536:
        raise ArchlabError(f"--port {args.port}: allowed 1..65535")
    token = access_token(args.host, args.token)
    cmd = streamlit_command(target, args.host, args.port)
    if args.print_command:
        print(f"{ENV_TARGET}={target} " + (f"{access.ENV_TOKEN}={token} " if token else "") + " ".join(cmd))
        return 0
    check_port(args.host, args.port)
    env = {**os.environ, ENV_TARGET: target, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    env.pop(access.ENV_TOKEN, None)
    url = f"http://{args.host}:{args.port}"
    if token:
        env[access.ENV_TOKEN] = token
        url += f"/?{access.QUERY_KEY}={token}"
    if not access.is_loopback(args.host):
        print(f"archlab app: warning: --host {args.host} is not a loopback address: anyone who can reach this "
              f"machine on port {args.port} can ask for the dashboard; it shows data only with the access token in "
              "the URL below (plain HTTP: use it on trusted networks or through an SSH tunnel)",
              file=sys.stderr, flush=True)
    print(f"archlab app: {url}  (storage: {target})", file=sys.stderr, flush=True)
    os.execve(sys.executable, cmd, env)  # replaces this process: signals reach Streamlit directly
    return 0  # pragma: no cover


def register(sub: Any) -> None:
    p = sub.add_parser("app", help="the web dashboard over study storages (Streamlit, read-only)")
    p.add_argument("runs_dir", nargs="?", metavar="RUNS_DIR", default=None,
                   help="runs directory (every */study.db), a run directory or a study file (default ./runs)")
    p.add_argument("--storage", metavar="URL", default=None, help="Optuna storage URL (sqlite:///..., postgresql+psycopg2://...)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    p.add_argument("--token", action="store_true",
                   help="require an access token (printed in the URL) on a loopback host too; always on for "
                        "other hosts. The token is $ARCHLAB_APP_TOKEN when set, else a new random one")
    p.add_argument("--print-command", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_app)
