"""GET /api/v1/docs: the API reference as one plain HTML page, made from the OpenAPI document.

Swagger UI and ReDoc load their scripts from a CDN, which servers without
internet access cannot reach; this page needs nothing but itself and links the
OpenAPI JSON for tools that read it.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from starlette.responses import HTMLResponse

__all__ = ["docs_page"]

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
    "line-height:1.5;color:#222}code,pre{font-family:ui-monospace,monospace;font-size:.9em}"
    "pre{background:#f5f5f5;padding:.6rem;overflow:auto}h2{border-top:1px solid #ddd;"
    "padding-top:1rem}.m{font-weight:bold;margin-right:.5rem}"
)
_METHODS = ("get", "put", "post", "patch", "delete")


def docs_page(openapi: dict[str, Any], openapi_url: str) -> HTMLResponse:
    """The reference: each route with its summary, description, body and answers."""
    info = openapi.get("info", {})
    parts = [
        f"<h1>{escape(info.get('title', 'API'))} {escape(str(info.get('version', '')))}</h1>",
        f"<p>{escape(info.get('description', ''))}</p>",
        f'<p>Machine-readable: <a href="{escape(openapi_url)}">OpenAPI document</a>.</p>',
    ]
    for path, operations in openapi.get("paths", {}).items():
        for method in _METHODS:
            if method in operations:
                parts.append(_operation(method, path, operations[method]))
    parts.append("<h2>Schemas</h2>")
    for name, schema in openapi.get("components", {}).get("schemas", {}).items():
        parts.append(f'<h3 id="{escape(name)}">{escape(name)}</h3>')
        parts.append(f"<pre>{escape(json.dumps(schema, indent=2))}</pre>")
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(info.get('title', 'API'))}</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(parts)}</body></html>"
    )
    return HTMLResponse(
        html, headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"}
    )


def _operation(method: str, path: str, operation: dict[str, Any]) -> str:
    html = [
        f'<h2><span class="m">{method.upper()}</span><code>{escape(path)}</code></h2>',
        f"<p>{escape(operation.get('summary', ''))}</p>",
    ]
    if operation.get("description"):
        html.append(f"<p>{escape(operation['description'])}</p>")
    parameters = operation.get("parameters", [])
    if parameters:
        items = "".join(
            f"<li><code>{escape(p['name'])}</code> ({escape(p['in'])}) "
            f"{escape(p.get('description', '') or p.get('schema', {}).get('description', ''))}</li>"
            for p in parameters
        )
        html.append(f"<p>Parameters:</p><ul>{items}</ul>")
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    if body:
        html.append(f"<p>Body: {_schema_name(body.get('schema', {}))}</p>")
    answers = "".join(
        f"<li><code>{escape(status)}</code> {escape(answer.get('description', ''))}"
        f"{_answer_schema(answer)}</li>"
        for status, answer in operation.get("responses", {}).items()
    )
    html.append(f"<p>Answers:</p><ul>{answers}</ul>")
    return "".join(html)


def _answer_schema(answer: dict[str, Any]) -> str:
    schema = answer.get("content", {}).get("application/json", {}).get("schema")
    return f" — {_schema_name(schema)}" if schema else ""


def _schema_name(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref", "")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        return f'<a href="#{escape(name)}">{escape(name)}</a>'
    return f"<code>{escape(json.dumps(schema))}</code>"
