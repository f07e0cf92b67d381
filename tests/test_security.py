"""No credential in the repository, nothing that unpickles, services on loopback by default."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.conftest import closed_port_uri
from trading_ml.cli import main, parser

REPO = Path(__file__).resolve().parent.parent
UNPICKLING = re.compile(
    r"pickle\.loads?\(|joblib\.load\(|read_pickle\(|allow_pickle\s*=\s*True|torch\.load\((?![^)]*weights_only=True)"
)
CREDENTIAL = re.compile(
    r"(?i)(password|secret|token)\s*[:=]\s*['\"]?(?!\$\{|change-me|null|none|\*\*\*)[A-Za-z0-9+/_\-]{6,}"
)
URI_PASSWORD = re.compile(r"mongo(?:db)?(?:\+srv)?://[^:/@\s]+:(?!\$\{|\*\*\*|PASSWORD|pw@)[^@\s]+@")


def committed_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    return [REPO / name for name in names if not name.startswith("tests/")]  # tests hold fake credentials on purpose


def test_no_credential_is_committed():
    leaks = []
    for path in committed_files():
        if path.suffix in {".png", ".parquet"} or not path.is_file():
            continue
        text = path.read_text(errors="ignore")
        leaks += [f"{path.name}: {m.group(0)}" for m in CREDENTIAL.finditer(text)]
        leaks += [f"{path.name}: {m.group(0)}" for m in URI_PASSWORD.finditer(text)]
    assert leaks == []


def test_nothing_loads_pickle():
    sources = [
        *REPO.joinpath("trading_ml").rglob("*.py"),
        *REPO.joinpath("dags").glob("*.py"),
        *REPO.joinpath("plugins").glob("*.py"),
    ]
    found = [f"{path.name}: {m.group(0)}" for path in sources for m in UNPICKLING.finditer(path.read_text())]
    assert found == [] and len(sources) > 20


def test_services_listen_on_loopback_by_default():
    serve = parser().parse_args(["serve"])
    assert serve.host == "127.0.0.1"
    assert (
        'AIRFLOW__API__HOST="${AIRFLOW__API__HOST:-127.0.0.1}"' in (REPO / "scripts" / "airflow-standalone").read_text()
    )


def test_a_password_in_the_mongo_uri_reaches_no_log_manifest_or_file(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.setenv("TRADING_ML_MONGO_URI", closed_port_uri().replace("secret", "hunter2-pw"))
    code = main(
        ["ingest", "--symbols", "AAPL", "--timeframes", "1d", "--as-of", "2026-11-20", "--data-dir", str(tmp_path)]
    )
    out, err = capsys.readouterr()
    written = [path.read_text(errors="ignore") for path in tmp_path.rglob("*") if path.is_file()]
    assert code == 0 and "falling back to TinyDB" in caplog.text and len(written) >= 3
    assert "user:***@" in caplog.text + "".join(written)
    assert all("hunter2-pw" not in text for text in [out, err, caplog.text, *written])
