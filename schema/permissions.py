"""Who may call which root field: one permission class per audience, on root fields only
(leaves stay plain attributes, which keeps execution fast)."""

from __future__ import annotations

from typing import Any, ClassVar

from strawberry.permission import BasePermission

from schema.context import Info, Role, Viewer
from schema.exceptions import Forbidden, Unauthenticated


def require(viewer: Viewer, roles: frozenset[Role]) -> None:
    """Raise UNAUTHENTICATED without a usable credential, FORBIDDEN without the right role."""
    if viewer.role in roles:
        return
    if viewer.role is Role.ANONYMOUS:
        raise Unauthenticated(viewer.credential_problem or "this operation needs a credential")
    raise Forbidden(f"the {viewer.role.value} role may not do this")


class _RolePermission(BasePermission):
    roles: ClassVar[frozenset[Role]]

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        require(info.context.viewer, self.roles)
        return True


class MemberOnly(_RolePermission):
    roles = frozenset({Role.MEMBER})


class StaffOnly(_RolePermission):
    """The merchant's backend (service keys) and admins."""

    roles = frozenset({Role.SERVICE, Role.ADMIN})


class MemberOrStaff(_RolePermission):
    roles = frozenset({Role.MEMBER, Role.SERVICE, Role.ADMIN})


class AdminOnly(_RolePermission):
    roles = frozenset({Role.ADMIN})


class AnyoneButMembersAndPartners(_RolePermission):
    """Self sign-up (anonymous) and the merchant's backend."""

    roles = frozenset({Role.ANONYMOUS, Role.SERVICE, Role.ADMIN})

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        # A credential that was sent but refused is an error, not a quiet downgrade to
        # anonymous: a backend with a mistyped key must not lose the member token unseen.
        problem = info.context.viewer.credential_problem
        if problem is not None:
            raise Unauthenticated(problem)
        return super().has_permission(source, info, **kwargs)


class PartnerOrAdmin(_RolePermission):
    roles = frozenset({Role.PARTNER, Role.ADMIN})
