"""Everything Dagster: assets by group, checks, jobs, sensors, hooks, resources and IO managers.

Loaded by ``@dg.definitions`` + ``load_from_defs_folder`` (see ``videoqa_pipeline/definitions.py``);
the libraries (``media``, ``ai``, ``search``, ``storage``, ``service``, ``steps``) never import it.
"""
