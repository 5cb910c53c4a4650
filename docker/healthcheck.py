"""Container health check of a handpose-sweep Ray node (the image's HEALTHCHECK).

Healthy when the project is installed (importable without importing it: no torch start-up
every 30 s) and the Ray node in this container answers its health endpoint: the dashboard
agent's ``/api/healthz`` (raylet alive, and on the head the GCS too). That endpoint is one of
the few Ray serves without the auth token, so the check needs no secret.

    python docker/healthcheck.py [--port 52365] [--host 127.0.0.1] [--timeout 5]

Exit 0 healthy, 1 not (the reason on stdout, which `docker inspect` shows).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import urllib.error
import urllib.request

DEFAULT_AGENT_PORT = 52365  # `ray start --dashboard-agent-listen-port` default


def check(host: str, port: int, timeout: float) -> str | None:
    """None when healthy, else the reason."""
    missing = [m for m in ("handpose", "sweeps") if importlib.util.find_spec(m) is None]
    if missing:
        return f"not installed: {', '.join(missing)}"
    url = f"http://{host}:{port}/api/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            body = r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return f"{url}: HTTP {e.code} {e.read().decode(errors='replace').strip()}"
    except OSError as e:  # refused, timed out, unreachable
        return f"{url}: no Ray node answers ({getattr(e, 'reason', e)})"
    return None if "raylet: success" in body else f"{url}: {body.strip()}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("HANDPOSE_HEALTHCHECK_PORT", DEFAULT_AGENT_PORT)),
    )
    p.add_argument("--timeout", type=float, default=5.0)
    args = p.parse_args(argv)
    reason = check(args.host, args.port, args.timeout)
    print(reason or "healthy")
    return 1 if reason else 0


if __name__ == "__main__":
    sys.exit(main())
