"""The model catalog."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from gengate.api.deps import CallerDep
from gengate.api.responses import json_response
from gengate.api.schemas import AUTHED, ModelInfo, ModelList, documented

router = APIRouter(tags=["models"])


@router.get(
    "/v1/models",
    summary="List models",
    response_model=None,
    responses={200: {"model": ModelList}, **documented(*AUTHED)},
)
async def list_models(caller: CallerDep) -> Response:
    """Every model this deployment serves, with its input schema, pricing and limits."""
    gw = caller.gw
    return json_response({"models": [model.describe() for model in gw.catalog]})


@router.get(
    "/v1/models/{model:path}",
    summary="Get a model",
    response_model=None,
    responses={200: {"model": ModelInfo}, **documented(*AUTHED)},
)
async def get_model(model: str, caller: CallerDep) -> Response:
    gw = caller.gw
    return json_response(gw.catalog.get(model).describe())
