"""The HTTP service: signed webhook intake, completion callbacks and the operations endpoints.

Kept light on import (no web framework here), so Dagster definitions can use
:mod:`.callbacks` without loading Starlette.
"""
