#!/usr/bin/env bash
# The broker examples under `warden serve`: order-events (HTTP → Kafka →
# its own handler → Redis) and amqp-worker (RabbitMQ queue trigger with a
# dead-letter exchange). Needs Kafka on 9092, RabbitMQ and Redis
# (tests/services.sh starts them). Stops the server at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
warden=${WARDEN_BIN:-${CARGO_TARGET_DIR:-target}/release/warden}
guests=guest-modules/target/wasm32-wasip2/release
examples=guest-modules/examples
data=guest-modules/target/warden-brokers
rm -rf "$data" && mkdir -p "$data"
log="$data/serve.log"

"$warden" serve --config $examples/brokers.toml >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  grep -q "warden: admin" "$log" && break
  kill -0 $server 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
grep "^warden:" "$log"
api=(--server http://127.0.0.1:8091 --token "$(cat $data/admin.token)")

echo "== upload order-events and amqp-worker"
"$warden" module upload $guests/order_events.wasm --manifest $examples/order-events/warden.toml --activate "${api[@]}"
"$warden" module upload $guests/amqp_worker.wasm --manifest $examples/amqp-worker/warden.toml --activate "${api[@]}"

echo "== orders through Kafka"
for cents in 1250 799 4000; do curl -sS -X POST http://127.0.0.1:8090/orders -d $cents; done
for _ in $(seq 1 100); do
  curl -sS http://127.0.0.1:8090/orders/summary | grep -q "orders 3 " && break
  sleep 0.2
done
curl -sS http://127.0.0.1:8090/orders/summary

echo "== jobs through RabbitMQ (one is poison)"
for job in 5 7 poison 30; do curl -sS -X POST http://127.0.0.1:8090/jobs -d $job; done
for _ in $(seq 1 100); do
  curl -sS http://127.0.0.1:8090/jobs/stats | grep -q 'dead \["poison"' && break
  sleep 0.2
done
curl -sS http://127.0.0.1:8090/jobs/stats

echo "== dead letters in the audit log"
curl -sS -H "Authorization: Bearer $(cat $data/admin.token)" "http://127.0.0.1:8091/v1/audit" |
  python3 -c 'import json,sys; [print("  ", e["module"], "-", e["detail"]) for e in json.load(sys.stdin)["events"] if e["kind"] == "dead-letter"]'
