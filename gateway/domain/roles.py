"""Who a caller is to the gateway: the one list of roles. Pure, no I/O.

Tokens (``role`` claim), the API's permission checks, ``welfare-gateway token --role``
and the documentation all take their role names from :class:`Role`.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    PLATFORM_ADMIN = "platform_admin"
    TENANT_ADMIN = "tenant_admin"
    INSTALLER = "installer"
    OPERATOR = "operator"
    CLINICIAN = "clinician"
    AUDITOR = "auditor"
