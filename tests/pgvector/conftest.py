"""One throwaway PostgreSQL for the session, shared with tests/conformance.

Below Python 3.13 pgserver must be installed (it is in the test extra), so a missing
server fails loudly instead of silently skipping the pgvector conformance run.
"""

from __future__ import annotations

import sys

from sitechat.testing.pg import postgres_fixture

postgres = postgres_fixture(skip_if_unavailable=sys.version_info >= (3, 13))
