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

export PATH="$HOME/.cargo/bin:$PATH"
status=0
ensure postgresql 5432 bash -c 'pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start' || status=1
ensure mariadb 3306 bash -c 'mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null; start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql' || status=1
ensure redis 6379 redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log || status=1
ensure rabbitmq 5672 rabbitmq-server -detached || status=1
ensure_kafka || status=1
exit $status
