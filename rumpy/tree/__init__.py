"""The result tree: every run folder is a node; branches live inside their parent's folder."""
