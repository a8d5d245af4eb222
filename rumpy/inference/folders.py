"""Where `rumpy eval` and `rumpy export-model` write inside a node, declared to the tree."""
from ..tree.declared import declare

EVAL_DIR = "eval"
EXPORT_DIR = "export"
declare("node", EVAL_DIR, "rumpy eval")
declare("node", EXPORT_DIR, "rumpy export-model")
