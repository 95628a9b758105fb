"""A plugin module that gives up at import the way some native-library wrappers do."""

import sys

sys.exit("demo: required native library not found")
