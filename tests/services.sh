#!/usr/bin/env bash
# Starts the backing services the integration tests talk to, if they are down.
# Facts and commands: shared/SERVICES.md. Safe to run repeatedly.
set -uo pipefail

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

wait_for() { # <name> <port>
  for _ in $(seq 1 60); do up "$2" && return 0; sleep 1; done
  echo "[services] $1 did not come up on 127.0.0.1:$2" >&2
  return 1
}

ensure() { # <name> <port> <start command...>
  local name=$1 port=$2; shift 2
  if up "$port"; then return 0; fi
  if ! command -v "$1" >/dev/null; then
    echo "[services] $name is down and not installed here" >&2
    return 1
  fi
  echo "[services] starting $name" >&2
  as_root "$@" >/dev/null 2>&1 || true
  wait_for "$name" "$port"
}

# Kafka: the Kafka-compatible `tansu` broker (in-memory), installed once per machine.
ensure_kafka() {
  if up 9092; then return 0; fi
  if ! command -v tansu >/dev/null; then
    echo "[services] installing tansu (Kafka-compatible broker; ~25 min once per machine)" >&2
    cargo install tansu --locked --features dynostore >&2 || return 1
  fi
  echo "[services] starting tansu on 127.0.0.1:9092" >&2
  mkdir -p "${TMPDIR:-/tmp}/warden-tansu"
  setsid nohup tansu broker --listener-url tcp://127.0.0.1:9092 \
    --advertised-listener-url tcp://127.0.0.1:9092 --storage-engine memory://tansu/ \
    >"${TMPDIR:-/tmp}/warden-tansu/broker.log" 2>&1 < /dev/null &
  wait_for tansu 9092
}

# Least-privilege database roles for modules (idempotent). The superuser
# logins above are only for this set-up; modules, tests and the demo connect
# as these. warden_rw: read-write in database `test`; warden_ro: read only;
# warden_tenant_b: a second tenant's own credential; warden_other: a role
# warden_rw may SET ROLE to (the role-reset test); warden_ctl: the host's
# control-url role, which stops the others' statements.
pg_roles() {
  local psql=(env PGOPTIONS=--client-min-messages=warning psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -qAt)
  "${psql[@]}" -d postgres -c "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 \
    || "${psql[@]}" -d postgres -c "CREATE DATABASE test" || return 1
  "${psql[@]}" -d test <<'SQL' || return 1
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'warden_rw') THEN CREATE ROLE warden_rw LOGIN; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'warden_ro') THEN CREATE ROLE warden_ro LOGIN; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'warden_tenant_b') THEN CREATE ROLE warden_tenant_b LOGIN; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'warden_other') THEN CREATE ROLE warden_other NOLOGIN; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'warden_ctl') THEN CREATE ROLE warden_ctl LOGIN; END IF;
END $$;
GRANT warden_other TO warden_rw;
-- The host's control-url role: it may cancel and end the modules' sessions,
-- and they may not signal it (membership goes one way).
GRANT warden_rw, warden_ro, warden_tenant_b TO warden_ctl;
GRANT USAGE, CREATE ON SCHEMA public TO warden_rw, warden_tenant_b;
GRANT USAGE ON SCHEMA public TO warden_ro;
ALTER DEFAULT PRIVILEGES FOR ROLE warden_rw IN SCHEMA public GRANT SELECT ON TABLES TO warden_ro;
SQL
}

mariadb_users() {
  mysql -h 127.0.0.1 -u root <<'SQL'
CREATE DATABASE IF NOT EXISTS test;
CREATE USER IF NOT EXISTS 'warden_rw'@'127.0.0.1', 'warden_rw'@'localhost',
  'warden_ro'@'127.0.0.1', 'warden_ro'@'localhost',
  'warden_tenant_b'@'127.0.0.1', 'warden_tenant_b'@'localhost';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER, CREATE TEMPORARY TABLES,
  LOCK TABLES, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, EXECUTE, TRIGGER, REFERENCES
  ON test.* TO 'warden_rw'@'127.0.0.1', 'warden_rw'@'localhost',
  'warden_tenant_b'@'127.0.0.1', 'warden_tenant_b'@'localhost';
GRANT SELECT, SHOW VIEW ON test.* TO 'warden_ro'@'127.0.0.1', 'warden_ro'@'localhost';
CREATE ROLE IF NOT EXISTS warden_mrole;
GRANT warden_mrole TO 'warden_rw'@'127.0.0.1', 'warden_rw'@'localhost';
CREATE USER IF NOT EXISTS 'warden_ctl'@'127.0.0.1', 'warden_ctl'@'localhost';
GRANT PROCESS, CONNECTION ADMIN ON *.* TO 'warden_ctl'@'127.0.0.1', 'warden_ctl'@'localhost';
SQL
}

export PATH="$HOME/.cargo/bin:$PATH"
status=0
ensure postgresql 5432 bash -c 'pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start' || status=1
ensure mariadb 3306 bash -c 'mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null; start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql' || status=1
ensure redis 6379 redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log || status=1
ensure rabbitmq 5672 rabbitmq-server -detached || status=1
ensure_kafka || status=1
if up 5432; then pg_roles || { echo "[services] could not create the PostgreSQL roles" >&2; status=1; }; fi
if up 3306; then mariadb_users || { echo "[services] could not create the MariaDB users" >&2; status=1; }; fi
exit $status
