"""Exit 0 when both the PostgreSQL server of DATABASE_URL and the Redis of REDIS_URL answer.

Only the server is checked (through its `postgres` maintenance database): the test run creates
its own test database, so the database named in the URL need not exist.
"""

import sys
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis


def server_url(db_url: str) -> str:
    parts = urlsplit(db_url.replace("postgres://", "postgresql://", 1))
    return urlunsplit(parts._replace(path="/postgres"))


def main(db_url: str, redis_url: str) -> int:
    try:
        psycopg.connect(server_url(db_url), connect_timeout=3).close()
        redis.Redis.from_url(redis_url, socket_connect_timeout=2).ping()
    except Exception as exc:
        print(f"not reachable: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
