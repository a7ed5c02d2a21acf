"""Exit 0 when both PostgreSQL (DATABASE_URL) and Redis (REDIS_URL) answer, 1 otherwise."""

import sys

import psycopg
import redis


def main(db_url: str, redis_url: str) -> int:
    try:
        psycopg.connect(db_url.replace("postgres://", "postgresql://", 1), connect_timeout=3).close()
        redis.Redis.from_url(redis_url, socket_connect_timeout=2).ping()
    except Exception as exc:
        print(f"not reachable: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
