"""/docs: Swagger UI served from this server, never from a CDN, so it works offline and
under a Content-Security-Policy without inline script.

The Swagger UI files come from the `fastapi-offline` package (which ships them inside it);
the page and its initialiser (static/docs.js) are ours. Without that package /docs says
so and points to /openapi.json.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

SWAGGER_MOUNT = "/static/swagger-ui"
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
router = APIRouter(include_in_schema=False)


def swagger_ui_dir() -> Path | None:
    """The folder holding swagger-ui-bundle.js and swagger-ui.css, or None when not installed."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    folder = Path(fastapi_offline.__file__).parent / "static"
    return folder if (folder / "swagger-ui-bundle.js").exists() and (folder / "swagger-ui.css").exists() else None


@router.get("/docs", response_class=HTMLResponse)
def docs(request: Request) -> HTMLResponse:
    available = getattr(request.app.state, "swagger_ui", False)
    return templates.TemplateResponse(request, "docs.html", {"available": available, "mount": SWAGGER_MOUNT,
                                                             "openapi_url": request.app.openapi_url},
                                      status_code=200 if available else 503)


def install(app: FastAPI) -> None:
    folder = swagger_ui_dir()
    app.state.swagger_ui = folder is not None
    if folder is not None:
        app.mount(SWAGGER_MOUNT, StaticFiles(directory=str(folder)), name="swagger-ui")
    app.include_router(router)
