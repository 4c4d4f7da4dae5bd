"""Every module that defines tables, imported once so SQLModel.metadata is the whole schema."""

from sqlmodel import SQLModel

import catalog.audit.models
import catalog.console.models
import catalog.events
import catalog.products.models
import catalog.publishing.models
import policies.models
import sharing.models

# Named here so no tool mistakes the imports above for unused ones.
TABLE_MODULES = (
    catalog.audit.models,
    catalog.console.models,
    catalog.events,
    catalog.products.models,
    catalog.publishing.models,
    policies.models,
    sharing.models,
)
metadata = SQLModel.metadata
