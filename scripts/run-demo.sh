#!/usr/bin/env bash
# `make run`: a local demo site, a gateway, a demo pad and an agent, ready for
# a browser. State lives in ./run (delete it for a fresh start). Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release
RUN=run
AGENT_LISTEN=${AGENT_LISTEN:-127.0.0.1:8080}
GATEWAY_LISTEN=${GATEWAY_LISTEN:-127.0.0.1:7443}
SITE_HTTP=${SITE_HTTP:-127.0.0.1:8000}
SITE_HTTPS=${SITE_HTTPS:-127.0.0.1:8443}
OWNER_LISTEN=${OWNER_LISTEN:-127.0.0.1:7480}
mkdir -p "$RUN/pads" "$RUN/www"
# The demo site's pages, refreshed each start (its verification token stays).
cp -R data/demo-site/. "$RUN/www/"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

wait_line() { # file prefix
  for _ in $(seq 1 300); do
    if grep -q "$2" "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for '$2' in $1" >&2; cat "$1" >&2; exit 1
}

"$BIN/padnet-origin" --root "$RUN/www" --http "$SITE_HTTP" --https "$SITE_HTTPS" --cert-dir "$RUN" >"$RUN/site.out" 2>"$RUN/site.log" &
pids+=($!)
wait_line "$RUN/site.out" "https listening"

[ -f "$RUN/state/gateway.toml" ] || "$BIN/padnet-gateway" init --state "$RUN/state" --listen "$GATEWAY_LISTEN"
PAD=$(ls "$RUN"/pads/*.pad 2>/dev/null | head -1 || true)
if [ -z "$PAD" ]; then
  PAD=$("$BIN/padnet-gateway" mint --state "$RUN/state" --value 5.00 --size 256MiB --out "$RUN/pads" | head -1)
fi

https_port=${SITE_HTTPS##*:}
"$BIN/padnet-gateway" serve --state "$RUN/state" --allow-private-upstreams \
  --connect-ports "80,443,$https_port" --extra-root-ca "$RUN/ca.pem" \
  --owner-listen "$OWNER_LISTEN" >"$RUN/gateway.out" 2>"$RUN/gateway.log" &
pids+=($!)
wait_line "$RUN/gateway.out" "owner portal on"

# The demo site is a registered, verified site with an owner who earns: 0.001
# a page, 0.01 under /reports/. Its owner's secret is kept in run/owner.secret.
site_host=${SITE_HTTP%:*}
if ! "$BIN/padnet-gateway" site show --state "$RUN/state" "$site_host" --json 2>/dev/null | grep -q '"verified":true'; then
  added=$("$BIN/padnet-gateway" site add --state "$RUN/state" "$SITE_HTTP" \
    --per-hit 0.001 --premium /reports/=0.01 --category demo --json)
  field() { printf '%s' "$added" | sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }
  token=$(field token)
  (umask 077; field secret >"$RUN/owner.secret"; echo >>"$RUN/owner.secret")
  mkdir -p "$RUN/www/.well-known/padnet"
  printf '%s\n' "$token" >"$RUN/www/.well-known/padnet/$token"
  "$BIN/padnet-gateway" site verify --state "$RUN/state" "$SITE_HTTP" >/dev/null
fi

"$BIN/padnet-agent" --pad "$PAD" --listen "$AGENT_LISTEN" >"$RUN/agent.out" 2>"$RUN/agent.log" &
pids+=($!)
wait_line "$RUN/agent.out" "listening on"

cat <<MSG

padnet demo is running (logs in $RUN/*.log; Ctrl-C stops everything)

  demo site      http://$SITE_HTTP/   and   https://localhost:$https_port/
  gateway        $GATEWAY_LISTEN  (state in $RUN/state, private upstreams allowed for the demo)
  pad            $PAD
  agent (proxy)  http://$AGENT_LISTEN   — its own page: http://$AGENT_LISTEN/  (and /status, /proxy.pac)
  owner portal   http://$OWNER_LISTEN/  — the demo site's owner; sign in with the secret in $RUN/owner.secret

Try:
  curl -x http://$AGENT_LISTEN http://$SITE_HTTP/
  curl -x http://$AGENT_LISTEN --cacert $RUN/ca.pem https://localhost:$https_port/
  curl http://$AGENT_LISTEN/status
  curl -H "Authorization: Bearer \$(cat $RUN/owner.secret)" http://$OWNER_LISTEN/api/owner

Or set your browser's HTTP and HTTPS proxy to $AGENT_LISTEN and open http://$SITE_HTTP/.
MSG
wait
