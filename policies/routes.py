"""Governance API: organisations, principals and tokens, DUAs, access requests, grants,
notifications."""

from policies.duas.routes import DuaController
from policies.grants.routes import GrantController
from policies.notifications.routes import NotificationController
from policies.principals.routes import OrganizationController, PrincipalController
from policies.requests.routes import AccessRequestController

CONTROLLERS = [
    OrganizationController,
    PrincipalController,
    DuaController,
    AccessRequestController,
    GrantController,
    NotificationController,
]
