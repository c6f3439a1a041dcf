"""The demo model server's Ollama model endpoints, which chat UIs call besides chat: the model list
(/api/tags), the loaded models (/api/ps, on every model refresh in Open WebUI), a model's card (/api/show)."""

from __future__ import annotations

import hashlib
from typing import Any

from aiohttp import web

from extproc.demo_wire import DEFAULT_MODEL, bad_request, json_reply, read_json

NAME = f"{DEFAULT_MODEL}:latest"
DIGEST = hashlib.sha256(NAME.encode()).hexdigest()
DETAILS = {"parent_model": "", "format": "gguf", "family": "demo", "families": ["demo"], "parameter_size": "0B",
           "quantization_level": "none"}
MODIFIED = "2025-01-01T00:00:00Z"


def _model(name: str = NAME) -> dict[str, Any]:
    return {"name": name, "model": name, "modified_at": MODIFIED, "size": 0, "digest": DIGEST, "details": DETAILS}


async def ollama_tags(request: web.Request) -> web.Response:
    return json_reply({"models": [_model()]})


async def ollama_version(request: web.Request) -> web.Response:
    return json_reply({"version": "0.0.0-demo"})


async def ollama_ps(request: web.Request) -> web.Response:
    loaded = {**_model(), "expires_at": "2099-01-01T00:00:00Z", "size_vram": 0, "context_length": 4096}
    del loaded["modified_at"]
    return json_reply({"models": [loaded]})


async def ollama_show(request: web.Request) -> web.Response:
    body = await read_json(request, "ollama")
    name = body.get("model") or body.get("name")
    if not isinstance(name, str) or not name:
        raise bad_request("ollama", "model is required")
    return json_reply({
        "modelfile": f"# demo model served by extproc\nFROM {name}\n",
        "parameters": "", "template": "{{ .Prompt }}", "details": DETAILS,
        "model_info": {"general.architecture": "demo", "general.parameter_count": 0, "demo.context_length": 4096},
        "capabilities": ["completion", "tools"], "modified_at": MODIFIED,
    })


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/tags", ollama_tags)
    app.router.add_get("/api/version", ollama_version)
    app.router.add_get("/api/ps", ollama_ps)
    app.router.add_post("/api/show", ollama_show)
