"""The ``options.pagination`` styles as :mod:`fragment_core.paging` paginators."""

from __future__ import annotations

from fragment_core.connectors.http.config import (
    CursorPagination,
    LinkHeaderPagination,
    NextUrlPagination,
    NoPagination,
    OffsetPagination,
    PagePagination,
)
from fragment_core.paging import (
    CursorPaging,
    LinkHeaderPaging,
    NextUrlPaging,
    NoPaging,
    OffsetPaging,
    PageNumberPaging,
    Paginator,
)

__all__ = ["AnyPagination", "paginator_for"]

AnyPagination = (
    NoPagination
    | PagePagination
    | OffsetPagination
    | CursorPagination
    | LinkHeaderPagination
    | NextUrlPagination
)

KEY = "options.pagination"


def paginator_for(pagination: AnyPagination) -> Paginator:
    """The paginator of the configured pagination style."""
    match pagination:
        case PagePagination():
            return PageNumberPaging(
                param=pagination.param,
                start=pagination.start,
                size_param=pagination.size_param,
                size=pagination.size,
                total_pages_path=pagination.total_pages_path,
                key=KEY,
            )
        case OffsetPagination():
            return OffsetPaging(
                param=pagination.param,
                limit_param=pagination.limit_param,
                limit=pagination.limit,
                start=pagination.start,
                total_path=pagination.total_path,
                key=KEY,
            )
        case CursorPagination():
            return CursorPaging(
                cursor_path=pagination.cursor_path,
                param=pagination.param,
                in_body=pagination.location == "body",
            )
        case LinkHeaderPagination():
            return LinkHeaderPaging(rel=pagination.rel)
        case NextUrlPagination():
            return NextUrlPaging(next_url_path=pagination.next_url_path, key=KEY)
    return NoPaging()
