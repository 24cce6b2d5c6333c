"""SAGE's Hydra configs (YAML only). This file makes ``sage.conf`` a regular package, which is
what Hydra's ``pkg://sage.conf`` source needs: the entry points of an installed package
(``sage-train``, ``sage-prepare``, ...) find their configs by module, not by file path."""
