from ..registry import Registry

# Data sets rumpy can build itself (no download), by the `name` key of a data set table; each is
# registered with its dataset kind (`kind="paired"`). A builder takes (cache_dir, role, cfg) and
# returns the table's path keys, e.g. {"lr": ..., "hr": ...}.
BUILTIN_SETS: Registry = Registry("built-in data set")
