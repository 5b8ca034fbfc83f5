"""The API's routes, one module per concern; each exposes `router`."""
