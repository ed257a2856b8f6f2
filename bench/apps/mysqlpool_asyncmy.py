"""``Depends(get_conn)`` and ``mysql_lifespan`` as in `mysqlpool`, default options, on asyncmy."""

from __future__ import annotations

from .mysqlpool import make_app

app = make_app("asyncmy")
