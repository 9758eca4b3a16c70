"""`GET /v1/transactions/{transaction_id}`: results stored by the stream function."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, status

from fraud_api.deps import ResultStoreDep
from fraud_api.schemas import StoredResult
from fraud_core.errors import StoreUnavailableError

router = APIRouter(prefix="/v1", tags=["results"])


@router.get(
    "/transactions/{transaction_id}",
    response_model=StoredResult,
    summary="The stored score of a transaction processed by the stream function",
    responses={404: {"description": "Unknown transaction"}, 503: {"description": "Store unreachable"}},
)
def get_transaction(
    transaction_id: Annotated[str, Path(min_length=1, max_length=128)], store: ResultStoreDep
) -> dict[str, Any]:
    try:
        found = store.get_result(transaction_id)
    except StoreUnavailableError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from exc
    if found is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"no stored result for transaction {transaction_id!r}"
        )
    return found
