#!/usr/bin/env bash
# End-to-end test of primserve-cli's --tls* and --auth_token_file flags against a real
# primserve-server with TLS, mTLS and bearer tokens (certificates made with openssl here).
#
# Usage: cli_security_test.sh PATH/TO/primserve-server PATH/TO/primserve-cli
# Needs /usr/bin/python3 with numpy (the shared harness; exit 77, a skip, without it) and openssl
# (exit 77 without it). The server is always stopped.
set -euo pipefail

source "$(dirname "$0")/cli_harness.sh" cli_security_test "$@"
if ! command -v openssl >/dev/null; then
  echo "SKIP: openssl is needed" >&2
  exit 77
fi

echo "== certificates: a CA, a server certificate for 127.0.0.1 / localhost, a client certificate"
(
  cd "$WORK_DIR"
  key=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${key[@]}" -keyout ca.key -out ca.pem -days 2 -subj /CN=cli-test-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
  openssl req "${key[@]}" -keyout server.key -out server.csr -subj /CN=localhost
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial 2 -days 2 -extfile server.ext -out server.pem
  openssl req "${key[@]}" -keyout client.key -out client.csr -subj /CN=cli-client
  printf 'extendedKeyUsage=clientAuth\n' >client.ext
  openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -set_serial 3 -days 2 -extfile client.ext -out client.pem
) >"$WORK_DIR/openssl.log" 2>&1 || fail "openssl: $(cat "$WORK_DIR/openssl.log")"
printf '# tokens\nright-token\n' >"$WORK_DIR/tokens"
printf 'right-token\n' >"$WORK_DIR/client_token"
printf 'wrong-token\n' >"$WORK_DIR/wrong_token"

echo "== TLS + tokens"
SERVER_ARGS=(--tls_cert="$WORK_DIR/server.pem" --tls_key="$WORK_DIR/server.key" --auth_token_file="$WORK_DIR/tokens")
CLI_ARGS=(--tls_ca="$WORK_DIR/ca.pem")
start_server
expect_ok "cost with TLS and the token" --auth_token_file="$WORK_DIR/client_token" cost --seq_len=8 --head_size=4 --num_heads=2
grep -q "self_attention" "$WORK_DIR/out" || fail "cost printed no self_attention line: $(cat "$WORK_DIR/out")"
pass "cost with TLS and the token"
RC=0
PRIMSERVE_AUTH_TOKEN=right-token "$CLI" --address="127.0.0.1:$PORT" --tls_ca="$WORK_DIR/ca.pem" \
  cost --seq_len=8 --head_size=4 --num_heads=2 >"$WORK_DIR/out" 2>"$WORK_DIR/err" || RC=$?
[[ $RC -eq 0 ]] || fail "PRIMSERVE_AUTH_TOKEN: exit $RC: $(cat "$WORK_DIR/err")"
pass "token from PRIMSERVE_AUTH_TOKEN"
expect_failure 1 "UNAUTHENTICATED: missing bearer token" "no token" -- cost --seq_len=8 --head_size=4 --num_heads=2
expect_failure 1 "UNAUTHENTICATED: invalid bearer token" "wrong token" -- \
  --auth_token_file="$WORK_DIR/wrong_token" cost --seq_len=8 --head_size=4 --num_heads=2
expect_failure 1 "NOT_FOUND: --auth_token_file $WORK_DIR/nope" "missing token file" -- \
  --auth_token_file="$WORK_DIR/nope" cost --seq_len=8 --head_size=4 --num_heads=2
expect_ok "health without a token" health
CLI_ARGS=()
expect_failure 1 "UNAVAILABLE" "plaintext against TLS" -- --auth_token_file="$WORK_DIR/client_token" health
expect_failure 1 "NOT_FOUND: tls_ca_file $WORK_DIR/nope.pem" "missing CA file" -- --tls_ca="$WORK_DIR/nope.pem" health
expect_failure 2 "--tls_cert and --tls_key go together" "certificate without key" -- \
  --tls_ca="$WORK_DIR/ca.pem" --tls_cert="$WORK_DIR/client.pem" health
stop_server || true

echo "== mTLS"
SERVER_ARGS=(--tls_cert="$WORK_DIR/server.pem" --tls_key="$WORK_DIR/server.key" --tls_client_ca="$WORK_DIR/ca.pem")
CLI_ARGS=(--tls_ca="$WORK_DIR/ca.pem" --tls_cert="$WORK_DIR/client.pem" --tls_key="$WORK_DIR/client.key"
          --tls_server_name=localhost)
start_server
expect_ok "sinusoidal with a client certificate" sinusoidal --length=2 --dim=4
pass "sinusoidal with a client certificate"
CLI_ARGS=(--tls_ca="$WORK_DIR/ca.pem")
expect_failure 1 "UNAVAILABLE" "mTLS without a client certificate" -- health
stop_server || true
echo "PASS: cli_security_test"
