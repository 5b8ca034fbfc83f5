"""What the device keeps on disk beside its database: for now each camera's learned scene.

The store, its schema and the history move here as they are worked on (see
shared/design/house-style.md). May import the core, never api/.
"""
