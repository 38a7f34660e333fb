"""Reading one config value with a default, from any of the config shapes the package accepts.

Models and the grouping settings take upstream's config duck-typed: a yacs CfgNode, a plain dict
(a node's sub-tree written by hand) or an attribute namespace. This module imports nothing, so
`higherpose.ops` can use it and still be imported alone.
"""
from collections.abc import Mapping


def cfg_get(node, key, default=None):
    """``node.KEY`` (or ``node[KEY]``) if the node has it, else ``default``; a missing node
    (None) gives ``default`` too. A key that is present is returned as is, even if it is None."""
    if node is None:
        return default
    if isinstance(node, Mapping):  # CfgNode is a dict
        return node[key] if key in node else default
    return getattr(node, key, default)


__all__ = ["cfg_get"]
