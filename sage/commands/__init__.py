"""The Hydra entry points of the train, explain and evaluate tasks, one module each.

Each runs three ways with the same config and outputs: the console script of an installed
package (``sage-train``), ``python -m sage.commands.train`` (what the study launches, and
what Lightning's DDP re-launches) and, in a checkout, the root ``train.py``. One module per
task because Hydra names the job after the module that holds the task function (the log
file, ``--help``'s title), and the configs are found relative to it (``sage/conf``).
"""
