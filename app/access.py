"""Who may see the dashboard: loopback hosts are open to this machine's users; any other host
needs the access token the server printed as it started (``?token=...`` in the page's URL).

No Streamlit here: ``archlab app`` (the command line) decides whether a token is needed and
makes one; the page (``archlab.app.main``) compares what the visitor's URL carries with it.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import socket

#: the server's access token (set by ``archlab app``; unset or empty: no token needed)
ENV_TOKEN = "ARCHLAB_APP_TOKEN"
#: the URL query parameter that carries it
QUERY_KEY = "token"


def is_loopback(host: str) -> bool:
    """True when every address ``host`` stands for is a loopback address (127.0.0.0/8, ::1,
    ``localhost``): only this machine can reach a server bound there. A name that does not
    resolve counts as not loopback."""
    name = host.strip().strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(i[4][0]).split("%", 1)[0]).is_loopback for i in infos)


def new_token() -> str:
    """A fresh random access token (24 URL-safe characters, 144 bits)."""
    return secrets.token_urlsafe(18)


def token_ok(given: str | None, expected: str | None) -> bool:
    """Whether ``given`` opens a server whose token is ``expected`` (no token: always; compared
    in constant time)."""
    if not expected:
        return True
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())
