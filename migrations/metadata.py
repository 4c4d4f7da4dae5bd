"""Every module that defines tables, imported once so SQLModel.metadata is the whole schema."""

from sqlmodel import SQLModel

import catalog.audit.models
import catalog.audit.record
import catalog.console.models
import catalog.products.models
import catalog.publishing.models
import policies.duas.models
import policies.grants.models
import policies.models
import policies.notifications.models
import policies.principals.models
import policies.requests.models
import sharing.recipients.models

# Named here so no tool mistakes the imports above for unused ones.
TABLE_MODULES = (
    catalog.audit.models,
    catalog.audit.record,
    catalog.console.models,
    catalog.products.models,
    catalog.publishing.models,
    policies.duas.models,
    policies.grants.models,
    policies.models,
    policies.principals.models,
    policies.requests.models,
    sharing.recipients.models,
    policies.notifications.models,
)
metadata = SQLModel.metadata
