"""SecantusDB as the compose file's mongodb service.

serve:  on first start, create the root user (MONGO_INITDB_ROOT_USERNAME, password from
        MONGO_INITDB_ROOT_PASSWORD_FILE) on a server bound to loopback without auth; then serve on
        every interface of the container with authentication required.
health: exit 0 when the server answers an authenticated ping (the compose health check).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pymongo

DATA = Path("/data/db")
PORT = 27017
# --standalone: answer `hello` as a standalone server, as the official mongo image does. By default it
# advertises a one-member replica set whose member is the bind address (0.0.0.0:27017), and drivers in
# other containers then look for the server on their own loopback.
SERVER = [
    "/opt/secantus/bin/secantusd-py",
    "--storage-path",
    str(DATA / "wiredtiger"),
    "--port",
    str(PORT),
    "--log-level",
    "WARNING",
    "--standalone",
]
INITIALIZED = DATA / ".root-user-created"


def credentials() -> tuple[str, str]:
    user = os.environ.get("MONGO_INITDB_ROOT_USERNAME", "")
    password_file = os.environ.get("MONGO_INITDB_ROOT_PASSWORD_FILE", "")
    if not user or not password_file:
        sys.exit("mongodb: set MONGO_INITDB_ROOT_USERNAME and MONGO_INITDB_ROOT_PASSWORD_FILE")
    return user, Path(password_file).read_text().strip()


def client(**auth) -> pymongo.MongoClient:
    return pymongo.MongoClient("127.0.0.1", PORT, serverSelectionTimeoutMS=3000, **auth)


def wait_until_up(server: subprocess.Popen, **auth) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"mongodb: the server stopped while starting (exit {server.returncode})")
        try:
            client(**auth).admin.command("ping")
            return
        except pymongo.errors.PyMongoError:
            time.sleep(0.5)
    sys.exit("mongodb: the server did not answer within 60 s")


def create_root_user() -> None:
    user, key = credentials()
    server = subprocess.Popen([*SERVER, "--host", "127.0.0.1"])
    try:
        wait_until_up(server)
        client().admin.command("createUser", user, pwd=key, roles=[{"role": "root", "db": "admin"}])
        INITIALIZED.touch()
        print(f"mongodb: root user {user} created", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=60)


def serve() -> None:
    if not INITIALIZED.exists():
        create_root_user()
    os.execv(SERVER[0], [*SERVER, "--host", "0.0.0.0", "--auth"])


def health() -> int:
    user, key = credentials()
    try:
        client(username=user, password=key, authSource="admin").admin.command("ping")
    except pymongo.errors.PyMongoError as error:
        print(f"mongodb: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "serve"
    sys.exit(health() if command == "health" else serve())
