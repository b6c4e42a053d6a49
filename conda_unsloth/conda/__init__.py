"""Everything that imports conda, in one package: conda's parser options for our verbs
(``parser``), the runtime the plugin hands to the verbs (``runtime``: the libmamba solver,
conda's transaction, conda's env directories), our errors as conda's (``errors``), the
``conda doctor`` health check (``health``), the post-command guard (``guard``) and the
``conda export`` exporters (``exporters``).

Only ``conda_unsloth/plugin.py``'s hooks import these modules, lazily, when conda runs them. No
core module imports this package or conda.
"""
