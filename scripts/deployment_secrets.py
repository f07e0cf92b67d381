#!/usr/bin/env python3
"""The docker-compose deployment's secrets, one file each under secrets/ (Docker secrets, mounted at
/run/secrets/ in the containers; never committed).

    python3 scripts/deployment_secrets.py generate [DIR]   # once, before `docker compose up`
    python3 scripts/deployment_secrets.py check [DIR]      # every secret (on the host, before `docker compose up`)
    python3 scripts/deployment_secrets.py check DIR airflow  # those mounted into the Airflow services (airflow-init)
    python3 scripts/deployment_secrets.py url TEMPLATE [DIR]  # Airflow's *_CMD options: {name} -> secret, URL-quoted

`generate` never overwrites a secret that exists (a new Fernet key would make Airflow's stored
connections unreadable); `check` names the first file that is missing, empty, a placeholder or, for
the Fernet key, not 32 url-safe base64 bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import sys
import urllib.parse
from pathlib import Path

MONGO_USER = "trading"
PASSWORDS = ("postgres_password", "mongo_root_password", "airflow_api_secret_key", "airflow_jwt_secret")
FERNET_KEY = "airflow_fernet_key"
CONNECTIONS = "airflow_connections.json"  # Airflow's LocalFilesystemBackend: the mongo_default connection
SIGNALS_API_URI = "signals_api_mongo_uri"  # the signals API's MongoDB URI (TRADING_ML_MONGO_URI_FILE)
PLACEHOLDERS = {"change-me", "changeme", "secret", "password", ""}
ALL = (*PASSWORDS, FERNET_KEY, CONNECTIONS, SIGNALS_API_URI)
MOUNTED = {  # which secrets each group of services has under /run/secrets (docker-compose.yaml's secrets: lists)
    "all": ALL,
    "airflow": ("postgres_password", FERNET_KEY, "airflow_api_secret_key", "airflow_jwt_secret", CONNECTIONS),
    "signals-api": (SIGNALS_API_URI,),
}


def fernet_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def generate(folder: Path) -> list[str]:
    """Write every missing secret; the names written."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    values = {name: secrets.token_urlsafe(32) for name in PASSWORDS} | {FERNET_KEY: fernet_key()}
    written = []
    for name, value in values.items():
        if write_new(folder / name, value):
            written.append(name)
    quoted = urllib.parse.quote((folder / "mongo_root_password").read_text().strip(), safe="")
    netloc = f"{MONGO_USER}:{quoted}@mongodb:27017"
    uri = f"mongo://{netloc}/trading_system?authSource=admin"
    if write_new(folder / CONNECTIONS, json.dumps({"mongo_default": uri}) + "\n"):
        written.append(CONNECTIONS)
    if write_new(folder / SIGNALS_API_URI, f"mongodb://{netloc}/trading_system?authSource=admin"):
        written.append(SIGNALS_API_URI)
    return written


def write_new(path: Path, value: str) -> bool:
    if path.exists():
        return False
    path.write_text(value if value.endswith("\n") else value + "\n")
    path.chmod(0o644)  # readable by the containers' users (uid 50000, postgres, mongodb); the folder is 0700
    return True


def problems(folder: Path, names: tuple[str, ...] = ALL) -> list[str]:
    """Why the deployment must not start with these secrets (nothing when they are fine)."""
    found = []
    for name in names:
        path = folder / name
        if not path.is_file():
            found.append(f"{path} is missing: run `python3 scripts/deployment_secrets.py generate` on the host")
            continue
        value = path.read_text().strip()
        if value.lower() in PLACEHOLDERS:
            found.append(
                f"{path} holds a placeholder ({value!r}): delete it and run `python3 scripts/deployment_secrets.py "
                "generate`"
            )
        elif name in PASSWORDS and len(value) < 16:
            found.append(f"{path} is {len(value)} characters: use at least 16 (generate writes 43)")
    fernet = folder / FERNET_KEY
    if FERNET_KEY in names and fernet.is_file() and not found:
        try:
            if len(base64.urlsafe_b64decode(fernet.read_text().strip().encode())) != 32:
                raise ValueError("not 32 bytes")
        except (binascii.Error, ValueError) as error:
            found.append(
                f"{fernet} is not a Fernet key (32 url-safe base64-encoded bytes: {error}); "
                "delete it and run generate (a new key makes stored connections unreadable)"
            )
    return found


def url(template: str, folder: Path = Path("/run/secrets")) -> str:
    return re.sub(
        r"\{(\w+)\}", lambda m: urllib.parse.quote((folder / m.group(1)).read_text().strip(), safe=""), template
    )


def main(argv: list[str]) -> int:
    command, *rest = argv or ["help"]
    if command == "generate":
        folder = Path(rest[0] if rest else "secrets")
        written = generate(folder)
        print(f"{folder}: wrote {', '.join(written) or 'nothing (every secret exists)'}")
        return 0
    if command == "check" and (len(rest) < 2 or rest[1] in MOUNTED):
        found = problems(Path(rest[0] if rest else "/run/secrets"), MOUNTED[rest[1] if len(rest) > 1 else "all"])
        for problem in found:
            print(f"error: {problem}", file=sys.stderr)
        return 1 if found else 0
    if command == "url" and rest:
        print(
            url(rest[0], Path(rest[1]) if len(rest) > 1 else Path("/run/secrets")), end=""
        )  # Airflow's *_CMD keeps a trailing newline: "airflow\n" would be the database's name
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
