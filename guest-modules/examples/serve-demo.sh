#!/usr/bin/env bash
# The main job: `warden serve` on embedded defaults (SQLite registry and
# sql.local, files under ./.warden), the example modules uploaded through
# the management API, exercised, and the server left running.
set -euo pipefail
cd "$(dirname "$0")/../.."
warden=${WARDEN_BIN:-${CARGO_TARGET_DIR:-target}/release/warden}
guests=guest-modules/target/wasm32-wasip2/release
examples=guest-modules/examples
data=.warden
mkdir -p "$data"
log="$data/serve.log"

for port in 8080 8081; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use (another warden serve?); stop it first" >&2
    exit 1
  fi
done

echo "== warden serve (embedded defaults, data in $data, log in $log)"
"$warden" serve >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  grep -q "warden: admin" "$log" && break
  kill -0 $server 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
grep "^warden:" "$log"

echo "== upload the examples through the API (validated, stored by sha256, activated)"
"$warden" module upload $guests/http_hello.wasm --manifest $examples/http-hello/warden.toml --activate
"$warden" module upload $guests/todo.wasm --manifest $examples/todo/warden.toml --activate
"$warden" module upload $guests/hello.wasm --manifest $examples/hello/warden.toml --activate
"$warden" module upload $guests/event_log.wasm --manifest $examples/event-log/warden.toml --activate
"$warden" module list

echo "== HTTP through the ingress"
curl -sS -X POST http://127.0.0.1:8080/hello/demo -d ping; echo
curl -sS -X POST http://127.0.0.1:8080/todo -d "try warden serve" >/dev/null
curl -sS http://127.0.0.1:8080/todo

echo "== an event: todo published todo.added, event-log (subscribed) handled it"
for _ in $(seq 1 50); do
  grep -q "event-log: todo.added" "$log" && break
  sleep 0.1
done
grep -m1 "event-log: todo.added" "$log" || echo "   (not delivered yet)"

echo "== a cron tick (hello runs every 10 s; its output goes to the log)"
for _ in $(seq 1 150); do
  grep -q "Hello, Warden" "$log" && break
  sleep 0.1
done
grep -m1 "Hello, Warden" "$log" || echo "   (no tick yet)"

echo "== refused at upload: a component importing sockets without [grants.net]"
"$warden" module upload $guests/net_probe.wasm --manifest $examples/demo-denials/no-net.toml || true

token=$(cat "$data/admin.token")
echo "== the audit log (GET /v1/audit)"
curl -sS -H "Authorization: Bearer $token" http://127.0.0.1:8081/v1/audit |
  python3 -c 'import json,sys; [print("  ", e["module"], e["version"], e["kind"], "-", e["detail"]) for e in json.load(sys.stdin)["events"][-8:]]'

cat <<EOT

warden is serving (pid $server): ingress http://127.0.0.1:8080, API http://127.0.0.1:8081
  curl -X POST http://127.0.0.1:8080/todo -d "a title"      # add a to-do
  $warden module list                         # uses the token in $data/admin.token
  curl -H "Authorization: Bearer \$(cat $data/admin.token)" http://127.0.0.1:8081/metrics
Ctrl-C stops it.
EOT
trap - EXIT
wait $server
